// The leaderboard page: shows one board live with its rules, and lets the
// user switch boards, give players points or submit scores, follow one
// player's neighbourhood ("find me"), look back at finished periods, and
// create boards and players.
//
// The DOM is built with createElement and textContent only (names come from
// users), and nothing here needs inline script or style, so the page runs
// under a strict Content-Security-Policy.

import * as api from './api.js';
import { BoardStream } from './live.js';
import { BoardState } from './model.js';
import { countdownText, isBetter, normalizeRules, rulesText, submitHint } from './rules.js';

const $ = (id) => document.getElementById(id);
const els = {
  connection: $('connection'),
  connectionText: $('connection-text'),
  select: $('board-select'),
  title: $('board-title'),
  rules: $('board-rules'),
  resetLine: $('reset-line'),
  resetLabel: $('reset-label'),
  resetTime: $('reset-time'),
  liveView: $('live-view'),
  players: $('players'),
  message: $('board-message'),
  periods: $('periods'),
  periodSelect: $('period-select'),
  periodView: $('period-view'),
  periodSummary: $('period-summary'),
  periodPlayers: $('period-players'),
  periodMessage: $('period-message'),
  periodBack: $('period-back'),
  meForm: $('find-me'),
  mePlayer: $('me-player'),
  aroundMe: $('around-me'),
  meSummary: $('me-summary'),
  around: $('around'),
  meForget: $('me-forget'),
  jumpForm: $('jump'),
  jumpRank: $('jump-rank'),
  rankView: $('rank-view'),
  rankSummary: $('rank-summary'),
  rankPage: $('rank-page'),
  playerOptions: $('player-options'),
  scoreForm: $('submit-score'),
  scorePlayer: $('score-player'),
  scoreValue: $('score-value'),
  scoreHint: $('score-value-hint'),
  notice: $('notice'),
  noticeText: $('notice-text'),
  noticeClose: $('notice-close'),
  announcer: $('announcer'),
  playerForm: $('new-player'),
  playerName: $('player-name'),
  boardForm: $('new-board'),
  boardName: $('board-name'),
  boardId: $('board-id'),
  boardOrder: $('board-order'),
  boardOperator: $('board-operator'),
  boardTop: $('board-top'),
  boardReset: $('board-reset'),
  boardCronField: $('board-cron-field'),
  boardCron: $('board-cron'),
};

const reducedMotion = window.matchMedia('(prefers-reduced-motion: reduce)');
const ordinalRules = new Intl.PluralRules('en', { type: 'ordinal' });
const ORDINAL_SUFFIX = { one: 'st', two: 'nd', few: 'rd', other: 'th' };
const ordinal = (n) => `${n}${ORDINAL_SUFFIX[ordinalRules.select(n)]}`;
const points = (n) => `${n} ${n === 1 || n === -1 ? 'point' : 'points'}`;
const numberFormat = new Intl.NumberFormat();
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** A score in words: "42 points" where points add up, "a score of 6,512" elsewhere. */
function scoreWords(score, rules) {
  if (typeof score !== 'number') return 'no score';
  return rules.operator === 'incr' ? points(score) : `a score of ${numberFormat.format(score)}`;
}

/** Players shown around the one followed, on each side. */
const AROUND_N = 2;
/** Players "Go to rank" shows. */
const JUMP_LIMIT = 10;
/** How often the neighbourhood is read again while nothing is streamed: the
    stream only reports changes to the board's top, not below it. */
const AROUND_POLL_MS = 15000;
/** The shortest time between two reads of it prompted by the stream. */
const AROUND_MIN_MS = 1000;

const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_NAME_CHARS = 100;

// ---------------------------------------------------------------------------
// Screen-reader announcements

/**
 * Reads out what changed on the board, politely and not too often: changes
 * are gathered until things have been quiet for a moment (or a few seconds
 * at most), then said in one go. Ranks are compared with those last read
 * out, so a burst of events gives where players ended up, not every step.
 * Only players who rose or entered are named; those they passed went down.
 */
class Announcer {
  constructor(region, quietMs = 1200, maxWaitMs = 4000) {
    this.region = region;
    this.quietMs = quietMs;
    this.maxWaitMs = maxWaitMs;
    this.spokenRanks = null; // player id → rank, as last read out
    this.players = null; // the players as last drawn, in rank order
    this.notes = new Map(); // key → text, e.g. the result of the user's +1
    this.timer = null;
    this.firstAt = 0;
  }

  /** Starts over for a new board: its first drawing is not news. */
  reset() {
    clearTimeout(this.timer);
    this.timer = null;
    this.spokenRanks = null;
    this.players = null;
    this.notes.clear();
  }

  /** Takes the players as drawn, in rank order. */
  drawn(players) {
    this.players = players;
    if (this.spokenRanks === null) this.spokenRanks = ranksOf(players);
    else this.#schedule();
  }

  /**
   * Takes the players of a new period as drawn. Everyone's place changed
   * because scores started again, which is not news: the reset itself is
   * said instead.
   */
  rebase(players) {
    this.players = players;
    this.spokenRanks = ranksOf(players);
  }

  /** Queues a message; a newer one with the same key replaces it. */
  say(key, text) {
    this.notes.delete(key);
    this.notes.set(key, text);
    this.#schedule();
  }

  #schedule() {
    if (this.timer === null) this.firstAt = Date.now();
    clearTimeout(this.timer);
    const wait = Math.min(this.quietMs, this.firstAt + this.maxWaitMs - Date.now());
    this.timer = setTimeout(() => this.#flush(), Math.max(0, wait));
  }

  #flush() {
    this.timer = null;
    const texts = [];
    if (this.players) {
      for (const player of this.players) {
        const was = this.spokenRanks.get(player.id);
        const rank = ordinal(player.rank);
        if (was === undefined) texts.push(`${player.name} entered the board at ${rank} place.`);
        else if (player.rank < was) texts.push(`${player.name} moved up to ${rank} place.`);
      }
      this.spokenRanks = ranksOf(this.players);
    }
    if (texts.length > 3) texts.splice(2, texts.length, 'Other places changed too.');
    texts.push(...this.notes.values());
    this.notes.clear();
    if (texts.length) this.region.textContent = texts.join(' ');
  }
}

const ranksOf = (players) => new Map(players.map((p) => [p.id, p.rank]));

const announcer = new Announcer(els.announcer);

// ---------------------------------------------------------------------------
// Connection status and notices

const STATUS_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Not live',
};

function setStatus(state) {
  if (els.connection.dataset.state === state) return;
  els.connection.dataset.state = state;
  els.connectionText.textContent = STATUS_TEXT[state];
}

/** Shows an error in the alert region until dismissed or replaced. */
function showNotice(text) {
  els.noticeText.textContent = text;
  els.notice.hidden = false;
}

function hideNotice() {
  els.notice.hidden = true;
  els.noticeText.textContent = '';
}

els.noticeClose.addEventListener('click', hideNotice);

function setBoardMessage(text) {
  els.message.textContent = text ?? '';
  els.message.hidden = !text;
}

// ---------------------------------------------------------------------------
// The player list

/** Rows by player id, reused across renders so that they can be animated. */
const rows = new Map();

function makeRow(player) {
  const li = document.createElement('li');
  li.className = 'player';
  li.dataset.id = player.id;

  const rank = document.createElement('span');
  rank.className = 'rank';

  const name = document.createElement('span');
  name.className = 'name';

  const score = document.createElement('span');
  score.className = 'score';
  const value = document.createElement('span');
  value.className = 'score-value';
  const unit = document.createElement('span');
  unit.className = 'visually-hidden';
  score.append(value, unit);

  // The visible "+1" stays first in the accessible name, so speech-input
  // users can say what they see.
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'plus';
  const forWhom = document.createElement('span');
  forWhom.className = 'visually-hidden';
  button.append('+1', forWhom);

  li.append(rank, name, score, button);
  li.parts = { rank, name, value, unit, forWhom };
  return li;
}

/** Restarts a CSS animation class on an element. */
function flash(element, className) {
  element.classList.remove('better', 'worse');
  void element.offsetWidth; // a reflow, so the animation starts over
  element.classList.add(className);
}

const rankText = (rank) => (Number.isInteger(rank) ? String(rank) : '–');
const scoreText = (score) => (typeof score === 'number' ? numberFormat.format(score) : '—');
const unitText = (score) => {
  if (typeof score !== 'number') return ' no score yet';
  return score === 1 || score === -1 ? ' point' : ' points';
};

/**
 * Fills a row. A changed score flashes green when it is better under the
 * board's order and red when it is worse: on a lower-is-better board a
 * "+1" is a step back, and it shows as one.
 */
function updateRow(li, player, order) {
  const { parts } = li;
  const rank = rankText(player.rank);
  if (parts.rank.textContent !== rank) parts.rank.textContent = rank;
  li.dataset.rank = rank;
  if (parts.name.textContent !== player.name) {
    parts.name.textContent = player.name;
    parts.forWhom.textContent = ` point for ${player.name}`;
  }
  const text = scoreText(player.score);
  if (parts.value.textContent !== text) {
    const before = li.score;
    parts.value.textContent = text;
    parts.unit.textContent = unitText(player.score);
    if (before !== undefined) flash(li, isBetter(order, player.score, before) ? 'better' : 'worse');
  }
  li.score = player.score;
  li.classList.toggle('pending', player.pending);
  markMe(li, player.id);
}

/** Marks the row of the player "find me" follows. */
function markMe(li, playerId) {
  const me = current?.me === playerId;
  li.classList.toggle('me', me);
  if (me) li.setAttribute('aria-current', 'true');
  else li.removeAttribute('aria-current');
}

/** A row with no button, for the neighbourhood and finished periods. */
function staticRow(player) {
  const li = document.createElement('li');
  li.className = 'player';
  li.dataset.id = player.id;
  li.dataset.rank = rankText(player.rank);
  const rank = document.createElement('span');
  rank.className = 'rank';
  rank.textContent = rankText(player.rank);
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = player.name;
  const score = document.createElement('span');
  score.className = 'score';
  const value = document.createElement('span');
  value.className = 'score-value';
  value.textContent = scoreText(player.score);
  const unit = document.createElement('span');
  unit.className = 'visually-hidden';
  unit.textContent = unitText(player.score);
  score.append(value, unit);
  li.append(rank, name, score);
  return li;
}

/**
 * Brings the list in line with `players` (already in rank order), moving
 * rows rather than rebuilding them, and slides each moved row from where it
 * was to where it is now (the FLIP technique).
 */
function renderPlayers(players, animate, order) {
  const list = els.players;
  const firstTops = new Map();
  if (animate) {
    for (const li of list.children) firstTops.set(li.dataset.id, li.getBoundingClientRect().top);
  }
  const focused = list.contains(document.activeElement) ? document.activeElement : null;

  const wanted = players.map((player) => {
    let li = rows.get(player.id);
    if (!li) {
      li = makeRow(player);
      rows.set(player.id, li);
    }
    updateRow(li, player, order);
    return li;
  });
  wanted.forEach((li, i) => {
    const here = list.children[i];
    if (here !== li) list.insertBefore(li, here ?? null);
  });
  while (list.children.length > wanted.length) {
    const gone = list.lastElementChild;
    rows.delete(gone.dataset.id);
    gone.remove();
  }

  // Moving a row takes focus from its button; give it back, so a keyboard
  // user can press +1 again and again while the player climbs.
  if (focused && document.activeElement !== focused) {
    if (focused.isConnected) focused.focus({ preventScroll: true });
    else els.players.closest('section').focus({ preventScroll: true });
  }

  if (!animate) return;
  for (const li of wanted) {
    li.getAnimations().forEach((a) => a.cancel());
    const firstTop = firstTops.get(li.dataset.id);
    if (firstTop === undefined) {
      li.animate([{ opacity: 0, transform: 'translateY(-0.5rem)' }, { opacity: 1, transform: 'none' }],
        { duration: 250, easing: 'ease-out' });
      continue;
    }
    const dy = firstTop - li.getBoundingClientRect().top;
    if (Math.abs(dy) > 0.5) {
      li.animate([{ transform: `translateY(${dy}px)` }, { transform: 'none' }],
        { duration: 350, easing: 'cubic-bezier(0.2, 0.8, 0.2, 1)' });
    }
  }
}

// ---------------------------------------------------------------------------
// The board being shown

/**
 * The board on screen: `{id, state, stream, drawn, drawnPeriod, expiryTimer,
 * gone, me, players, periods, periodsFor, viewing, around...}`.
 * `drawnPeriod` is the number of the period last drawn (null on a board that
 * does not reset), `me` the player "find me" follows, `players` the names
 * the player fields offer (id → name), `periods` the finished periods (null
 * until read), `viewing` the number of the finished period shown, or null.
 */
let current = null;
let renderQueued = false;
let knownBoards = [];

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function render() {
  // A gone board keeps its last snapshot, but it is not drawn again.
  if (!current || current.gone) return;
  const view = current.state.view();
  if (!view) return;

  els.title.textContent = view.name || view.id;
  document.title = `${view.name || view.id} · Leaderboard`;
  showRules(view.rules);
  renderPlayers(view.players, !reducedMotion.matches && current.drawn, view.rules.order);
  const period = current.state.snapshot.period?.number ?? null;
  if (current.drawn && period !== current.drawnPeriod) {
    announcer.rebase(view.players);
    // Said at the stream's `reset` event already, unless the page missed it.
    if (current.drawnPeriod !== null) announcer.say('reset', resetWords(current.drawnPeriod));
  } else {
    announcer.drawn(view.players);
  }
  current.drawn = true;
  current.drawnPeriod = period;
  if (!current.gone) setBoardMessage(view.players.length ? '' : emptyBoardText(view.rules));
  updateCountdown();
  checkPeriods(current);

  // A POST's answer holds a score for a few seconds; redraw when it lapses.
  clearTimeout(current.expiryTimer);
  const expiry = current.state.nextExpiry();
  if (expiry !== null) {
    current.expiryTimer = setTimeout(scheduleRender, Math.max(0, expiry - Date.now()) + 20);
  }
}

function emptyBoardText(rules) {
  if (rules.operator === 'incr') return 'No players yet. Add the first one with the form.';
  return 'No scores yet. Add players, then submit their scores with the form.';
}

/**
 * The rules line, the "+1" buttons (only where points add up: on a `set`
 * board "+1" would mean nothing, and on a `best` board it would add to a
 * best result rather than submit one, so those boards take scores through
 * the "Submit a score" form instead), and that form's hint.
 */
function showRules(rules) {
  const text = rulesText(rules);
  if (els.rules.textContent !== text) els.rules.textContent = text;
  els.players.dataset.plus = rules.operator === 'incr' ? 'on' : 'off';
  els.scoreHint.textContent = submitHint(rules);
}

function resetBoardView(title) {
  announcer.reset();
  rows.clear();
  els.players.replaceChildren();
  els.title.textContent = title;
  els.rules.textContent = '';
  setBoardMessage('');
  showLive();
  els.periods.hidden = true;
  els.periodSelect.replaceChildren();
  updateCountdown();
  showAround(null);
  els.mePlayer.value = '';
  els.scorePlayer.value = '';
  setFieldError(els.mePlayer, null);
  setFieldError(els.scorePlayer, null);
  setFieldError(els.scoreValue, null);
  els.playerOptions.replaceChildren();
}

/** Shows board `id`, following it live. */
function showBoard(id) {
  if (current && current.id === id && !current.gone) return;
  if (current) {
    current.stream.stop();
    clearTimeout(current.expiryTimer);
  }
  current = null;
  resetBoardView(id);
  setBoardMessage('Loading…');
  // "Added Zoë." belongs to the board that was shown.
  for (const status of document.querySelectorAll('.form-status')) status.textContent = '';
  selectBoard(id);
  setBoardForms(true);

  const board = {
    id,
    state: new BoardState(id),
    stream: null,
    drawn: false,
    drawnPeriod: null,
    expiryTimer: null,
    gone: false,
    me: null,
    players: new Map(),
    periods: null,
    periodsFor: null,
    viewing: null,
    aroundBusy: false,
    aroundAgain: false,
    aroundTimer: null,
    aroundLast: 0,
  };
  board.stream = new BoardStream(id, {
    status: (state) => { if (current === board) setStatus(state); },
    update: (snapshot) => {
      if (current !== board) return;
      const first = board.state.snapshot === null;
      board.state.applySnapshot(snapshot);
      learnPlayers(board, snapshot.players);
      scheduleRender();
      if (first) {
        // The board exists: read its players' names, and follow the player
        // followed here last time.
        loadPlayers(board);
        const remembered = rememberedMe(id);
        if (remembered) follow(board, remembered);
      } else {
        // The board changed, so the neighbourhood may have too.
        refreshAround(board);
      }
    },
    reset: (period) => {
      if (current !== board) return;
      periodEnded(board, period);
    },
    deleted: () => {
      if (current !== board) return;
      boardGone(board, 'This board was deleted.');
      announcer.say('board', 'This board was deleted.');
      refreshBoards();
    },
    missing: () => {
      if (current !== board) return;
      boardGone(board, `There is no board “${id}”. Pick another, or create it below.`);
      els.title.textContent = 'Board not found';
      document.title = 'Board not found · Leaderboard';
    },
  });
  current = board;
  // A page of ranks belongs to the board it was read on.
  els.rankView.hidden = true;
  els.rankPage.replaceChildren();
  setFieldError(els.jumpRank, null);
  board.stream.start();
}

/** Enables or disables the forms that write to the board shown. */
function setBoardForms(enabled) {
  els.playerForm.querySelector('button').disabled = !enabled;
  els.scoreForm.querySelector('button').disabled = !enabled;
  els.meForm.querySelector('button').disabled = !enabled;
}

function boardGone(board, message) {
  board.gone = true;
  setStatus('offline');
  rows.clear();
  els.players.replaceChildren();
  showLive();
  els.periods.hidden = true;
  setBoardMessage(message);
  showAround(null);
  setBoardForms(false);
  updateCountdown();
}

function showNoBoard() {
  if (current) current.stream.stop();
  current = null;
  resetBoardView('No boards yet');
  setBoardMessage('Create the first board with the form.');
  setStatus('offline');
  setBoardForms(false);
}

// ---------------------------------------------------------------------------
// The next reset

let countdownTimer = null;

/** Shows the time to the board's next reset, every second, while it has one. */
function updateCountdown() {
  const snapshot = current && !current.gone ? current.state.snapshot : null;
  const next = snapshot && typeof snapshot.next_reset === 'string' ? snapshot.next_reset : null;
  const at = next ? Date.parse(next) : NaN;
  if (Number.isNaN(at)) {
    els.resetLine.hidden = true;
    clearInterval(countdownTimer);
    countdownTimer = null;
    return;
  }
  const left = countdownText(at - Date.now());
  els.resetLabel.textContent = left ? 'Next reset in' : 'Resetting';
  const text = left ?? 'now…';
  if (els.resetTime.textContent !== text) els.resetTime.textContent = text;
  if (els.resetTime.dateTime !== next) {
    els.resetTime.dateTime = next;
    els.resetTime.title = dateFormat.format(new Date(at));
  }
  els.resetLine.hidden = false;
  if (countdownTimer === null) countdownTimer = setInterval(updateCountdown, 1000);
}

// ---------------------------------------------------------------------------
// Finished periods

/**
 * Reads the board's finished periods when the period in force is not the
 * first and they have not been read for it. A board that does not reset
 * has no `period`, and nothing is asked.
 */
async function checkPeriods(board) {
  const number = board.state.snapshot?.period?.number;
  if (!Number.isInteger(number) || number <= 1 || board.periodsFor === number) return;
  board.periodsFor = number;
  let periods;
  try {
    periods = await api.listPeriods(board.id);
  } catch (err) {
    // Tried again at the next snapshot, unless the server has no periods.
    if (err.status !== 404) board.periodsFor = null;
    return;
  }
  if (current !== board || !Array.isArray(periods)) return;
  board.periods = periods;
  fillPeriods(board);
}

/** A period has just ended (the stream's `reset` event): it joins the list. */
function periodEnded(board, period) {
  if (!period || !Number.isInteger(period.number)) return;
  board.periods = [period, ...(board.periods ?? []).filter((p) => p.number !== period.number)];
  fillPeriods(board);
  announcer.say('reset', resetWords(period.number));
}

const resetWords = (number) => `Period ${number} has ended; the board starts again.`;

function periodLabel(period) {
  const start = Date.parse(period.start);
  const end = Date.parse(period.end);
  if (Number.isNaN(start) || Number.isNaN(end)) return `Period ${period.number}`;
  return `Period ${period.number} · ${dateFormat.format(new Date(start))} – ${dateFormat.format(new Date(end))}`;
}

function fillPeriods(board) {
  if (current !== board || board.gone) return;
  const periods = board.periods ?? [];
  els.periods.hidden = periods.length === 0;
  const number = board.state.snapshot?.period?.number;
  const options = [new Option(Number.isInteger(number) ? `Live · period ${number}` : 'Live', 'live')];
  for (const period of periods) options.push(new Option(periodLabel(period), String(period.number)));
  els.periodSelect.replaceChildren(...options);
  els.periodSelect.value = board.viewing === null ? 'live' : String(board.viewing);
}

els.periodSelect.addEventListener('change', () => {
  const value = els.periodSelect.value;
  if (value === 'live') showLive();
  else showPeriod(Number(value));
});

els.periodBack.addEventListener('click', () => {
  showLive();
  els.periodSelect.focus();
});

function showLive() {
  if (current) current.viewing = null;
  els.periodView.hidden = true;
  els.liveView.hidden = false;
  els.periodPlayers.replaceChildren();
  if (!els.periods.hidden) els.periodSelect.value = 'live';
}

/** Shows a finished period's final standings in place of the live board. */
async function showPeriod(number) {
  const board = current;
  if (!board) return;
  board.viewing = number;
  let period = (board.periods ?? []).find((p) => p.number === number);
  if (period && !Array.isArray(period.top)) {
    try {
      period = await api.getPeriod(board.id, number);
    } catch (err) {
      if (current === board) showNotice(`Could not load period ${number}: ${err.message}`);
      return;
    }
  }
  if (current !== board || board.viewing !== number || !period) return;
  const count = Number.isInteger(period.players) ? period.players : null;
  const ended = Date.parse(period.end);
  const parts = [`Final standings of period ${number}`];
  if (!Number.isNaN(ended)) parts.push(`ended ${dateFormat.format(new Date(ended))}`);
  if (count !== null) parts.push(count === 1 ? '1 player' : `${numberFormat.format(count)} players`);
  els.periodSummary.textContent = parts.join(' · ');
  const top = Array.isArray(period.top) ? period.top : [];
  els.periodPlayers.replaceChildren(...top.map((p, i) => staticRow({ ...p, rank: p.rank ?? i + 1 })));
  els.periodMessage.textContent = top.length ? '' : 'No one scored in this period.';
  els.periodMessage.hidden = top.length > 0;
  els.liveView.hidden = true;
  els.periodView.hidden = false;
}

// ---------------------------------------------------------------------------
// Players the fields offer

/** Reads the board's first players, so the player fields can offer them by name. */
async function loadPlayers(board) {
  try {
    learnPlayers(board, await api.listPlayers(board.id));
  } catch {
    // Only suggestions are lost; ids still work.
  }
}

function learnPlayers(board, players) {
  let added = false;
  for (const p of players ?? []) {
    if (!p || typeof p.id !== 'string') continue;
    if (board.players.get(p.id) !== p.name) {
      board.players.set(p.id, p.name);
      added = true;
    }
  }
  if (added && current === board) {
    const options = [...board.players].map(([id, name]) => {
      const option = document.createElement('option');
      option.value = id;
      option.label = name;
      return option;
    });
    els.playerOptions.replaceChildren(...options);
  }
}

/**
 * The player id a field names: an id the board is known to have, else a
 * unique name (any case), else the text itself if it can be an id.
 */
function resolvePlayer(board, text) {
  const value = text.trim();
  if (!value) return { problem: 'Enter a name or a player id.' };
  if (board.players.has(value)) return { id: value };
  const lower = value.toLocaleLowerCase();
  const named = [...board.players].filter(([, name]) => name.toLocaleLowerCase() === lower);
  if (named.length === 1) return { id: named[0][0] };
  if (named.length > 1) return { problem: `${named.length} players are called ${value}; pick one from the list.` };
  if (ID_PATTERN.test(value)) return { id: value };
  return { problem: `No player called “${value}” on this board.` };
}

const playerName = (board, id) => board.players.get(id) ?? id;

// ---------------------------------------------------------------------------
// Find me: one player, with its neighbours, live

const meKey = (boardId) => `leaderboard:me:${boardId}`;

function rememberedMe(boardId) {
  try {
    return window.localStorage.getItem(meKey(boardId));
  } catch {
    return null; // storage is off; nothing is remembered
  }
}

function rememberMe(boardId, playerId) {
  try {
    if (playerId) window.localStorage.setItem(meKey(boardId), playerId);
    else window.localStorage.removeItem(meKey(boardId));
  } catch {
    // as above
  }
}

function follow(board, playerId) {
  board.me = playerId;
  rememberMe(board.id, playerId);
  // Scores are most often submitted for oneself.
  els.scorePlayer.value = playerId;
  setFieldError(els.scorePlayer, null);
  els.aroundMe.hidden = false;
  els.meSummary.textContent = `Looking for ${playerName(board, playerId)}…`;
  els.around.replaceChildren();
  for (const li of rows.values()) markMe(li, li.dataset.id);
  refreshAround(board, true);
}

function unfollow(board) {
  board.me = null;
  rememberMe(board.id, null);
  showAround(null);
  for (const li of rows.values()) markMe(li, li.dataset.id);
}

/**
 * Reads the followed player's neighbourhood again: at once when `now` (a
 * new player to follow, the user's own write), else at most once a second
 * (a rank costs the same at any depth, but a burst of stream events should
 * not become a burst of reads). Requests while a
 * read is under way or scheduled make one read after it, so a burst of
 * stream events costs two reads, not one per event.
 */
function refreshAround(board, now = false) {
  if (!board.me || board.gone) return;
  if (board.aroundBusy) {
    board.aroundAgain = board.aroundAgain || (now ? 'now' : true);
    return;
  }
  if (board.aroundTimer !== null) {
    if (!now) return;
    clearTimeout(board.aroundTimer);
    board.aroundTimer = null;
  }
  const wait = now ? 0 : board.aroundLast + AROUND_MIN_MS - Date.now();
  if (wait > 0) {
    board.aroundTimer = setTimeout(() => {
      board.aroundTimer = null;
      readAround(board);
    }, wait);
  } else {
    readAround(board);
  }
}

async function readAround(board) {
  const me = board.me;
  if (!me || board.gone || current !== board) return;
  board.aroundBusy = true;
  board.aroundAgain = false;
  board.aroundLast = Date.now();
  try {
    const data = await api.around(board.id, me, AROUND_N);
    if (current === board && board.me === me) {
      learnPlayers(board, data.players);
      showAround(board, data);
    }
  } catch (err) {
    if (current === board && board.me === me) {
      if (err.status === 404 && err.code === 'player_not_found') {
        unfollow(board);
        setFieldError(els.mePlayer, `There is no player “${me}” on this board.`);
      } else if (err.status === 404) {
        showAround(null); // the board is gone; the stream says so
      } else {
        els.meSummary.textContent = `Could not update: ${err.message}`;
      }
    }
  } finally {
    board.aroundBusy = false;
  }
  const again = board.aroundAgain;
  board.aroundAgain = false;
  // Someone else followed meanwhile: no reason to wait for that one.
  if (again) refreshAround(board, again === 'now' || board.me !== me);
}

/** Draws the neighbourhood `{player, players}`, or hides it (null). */
function showAround(board, data) {
  if (!board || !data) {
    els.aroundMe.hidden = true;
    els.around.replaceChildren();
    els.meSummary.textContent = '';
    return;
  }
  const rules = board.state.rules;
  const me = data.player;
  const of = Number.isInteger(data.out_of) && data.out_of >= me.rank
    ? ` of ${numberFormat.format(data.out_of)}`
    : '';
  const summary = Number.isInteger(me.rank)
    ? `${me.name} is ${ordinal(me.rank)}${of}, with ${scoreWords(me.score, rules)}.`
    : `${me.name} has no score yet.`;
  if (els.meSummary.textContent !== summary) els.meSummary.textContent = summary;
  els.around.replaceChildren(...data.players.map((p) => {
    const li = staticRow(p);
    markMe(li, p.id);
    return li;
  }));
  els.aroundMe.hidden = false;
}

handleSubmit(els.meForm, async () => {
  const board = current;
  if (!board || board.gone) return;
  const found = resolvePlayer(board, els.mePlayer.value);
  if (reportProblems([[els.mePlayer, found.problem ?? null]])) return;
  follow(board, found.id);
});

// "Go to rank": ten players from any rank, read at once whatever the depth.
handleSubmit(els.jumpForm, async () => {
  const board = current;
  if (!board || board.gone) return;
  const raw = els.jumpRank.value.trim();
  const rank = Number(raw);
  const problem = /^[0-9]+$/.test(raw) && rank >= 1 && Number.isSafeInteger(rank)
    ? null
    : 'A rank is a whole number from 1.';
  if (reportProblems([[els.jumpRank, problem]])) return;
  try {
    const data = await api.pageAt(board.id, rank, JUMP_LIMIT);
    if (current !== board) return;
    const players = data.players;
    const total = numberFormat.format(data.out_of);
    els.rankSummary.textContent = players.length === 0
      ? `There is no rank ${numberFormat.format(rank)}: ${total} players are ranked.`
      : `Ranks ${numberFormat.format(players[0].rank)}–${numberFormat.format(players[players.length - 1].rank)} of ${total}.`;
    els.rankPage.replaceChildren(...players.map((p) => {
      const li = staticRow(p);
      markMe(li, p.id);
      return li;
    }));
    els.rankView.hidden = false;
  } catch (err) {
    if (current === board) setFieldError(els.jumpRank, `Could not read that rank: ${err.message}`);
  }
});

els.meForget.addEventListener('click', () => {
  if (!current) return;
  unfollow(current);
  els.mePlayer.focus();
});

// The stream says nothing about changes below the board's top, so while the
// page is in view the neighbourhood is also read now and then.
setInterval(() => {
  if (current && current.me && document.visibilityState === 'visible') refreshAround(current);
}, AROUND_POLL_MS);
document.addEventListener('visibilitychange', () => {
  if (current && current.me && document.visibilityState === 'visible') refreshAround(current);
});

// ---------------------------------------------------------------------------
// "+1"

els.players.addEventListener('click', (event) => {
  const button = event.target.closest('button.plus');
  if (!button) return;
  const li = button.closest('li');
  addPoint(li.dataset.id, li.parts.name.textContent);
});

async function addPoint(playerId, name) {
  const board = current;
  const token = board.state.begin(playerId);
  scheduleRender();
  try {
    const player = await api.addPoint(board.id, playerId);
    board.state.settle(playerId, player, Date.now(), token);
    if (current === board) {
      hideNotice();
      announcer.say(`score:${playerId}`, `${player.name} has ${points(player.score)}.`);
      refreshAround(board, true);
    }
  } catch (err) {
    board.state.settle(playerId, null, Date.now(), token);
    if (current === board) showNotice(`Could not add a point for ${name}: ${err.message}`);
  }
  if (current === board) scheduleRender();
}

// ---------------------------------------------------------------------------
// Submit a score

/** What a `score/` answer means, in words, under the board's rules. */
function submitResult(answer, value, rules) {
  const score = numberFormat.format(answer.score);
  if (rules.operator === 'best') {
    if (answer.changed) return `New best for ${answer.name}: ${score}.`;
    return `${numberFormat.format(value)} does not beat ${answer.name}’s best, ${score}; nothing changed.`;
  }
  if (rules.operator === 'set') {
    return answer.changed ? `${answer.name}’s score is now ${score}.` : `${answer.name}’s score was ${score} already.`;
  }
  return `${answer.name} has ${points(answer.score)}.`;
}

handleSubmit(els.scoreForm, async (status) => {
  const board = current;
  if (!board || board.gone) return;
  const found = resolvePlayer(board, els.scorePlayer.value);
  const raw = els.scoreValue.value.trim();
  const value = Number(raw);
  const valueProblem = raw === '' || !Number.isSafeInteger(value) ? 'Enter a whole number.' : null;
  if (reportProblems([[els.scorePlayer, found.problem ?? null], [els.scoreValue, valueProblem]])) return;

  const playerId = found.id;
  const token = board.state.begin(playerId, { kind: 'submit', value });
  scheduleRender();
  try {
    const answer = await api.submitScore(board.id, playerId, value);
    board.state.settle(playerId, answer, Date.now(), token);
    if (current === board) {
      hideNotice();
      els.scoreValue.value = '';
      status.textContent = submitResult(answer, value, board.state.rules);
      refreshAround(board, true);
    }
  } catch (err) {
    board.state.settle(playerId, null, Date.now(), token);
    if (current !== board) return;
    if (err.code === 'player_not_found') reportProblems([[els.scorePlayer, `There is no player “${playerId}” on this board.`]]);
    else if (err.code === 'invalid_input' || err.status === 422) reportProblems([[els.scoreValue, err.message]]);
    else showNotice(`Could not submit a score for ${playerName(board, playerId)}: ${err.message}`);
  }
  if (current === board) scheduleRender();
});

// ---------------------------------------------------------------------------
// Board switcher and addresses

function boardIdFromPath() {
  const match = /^\/boards\/([^/]+)\/?$/.exec(window.location.pathname);
  if (!match) return null;
  const id = decodeURIComponent(match[1]);
  return ID_PATTERN.test(id) ? id : null;
}

/** The board to show at `/`: the demo board if there is one, else the first. */
function defaultBoardId() {
  if (knownBoards.some((b) => b.id === 'demo')) return 'demo';
  return knownBoards.length ? knownBoards[0].id : null;
}

function fillSelect() {
  const selected = current ? current.id : els.select.value;
  const options = knownBoards.map((b) => new Option(b.name || b.id, b.id));
  // Two boards with one name are told apart by their ids.
  const names = new Map();
  for (const b of knownBoards) names.set(b.name, (names.get(b.name) ?? 0) + 1);
  options.forEach((option, i) => {
    const b = knownBoards[i];
    if (names.get(b.name) > 1) option.text = `${b.name} (${b.id})`;
  });
  if (!knownBoards.length) options.push(new Option('No boards yet', ''));
  els.select.replaceChildren(...options);
  els.select.disabled = knownBoards.length === 0;
  if (selected) selectBoard(selected);
}

/** Selects `id` in the switcher, adding it if the list does not have it. */
function selectBoard(id) {
  if (![...els.select.options].some((o) => o.value === id)) {
    els.select.append(new Option(id, id));
    els.select.disabled = false;
  }
  els.select.value = id;
}

async function refreshBoards() {
  try {
    knownBoards = await api.listBoards();
  } catch (err) {
    showNotice(`Could not load the list of boards: ${err.message}`);
    return false;
  }
  fillSelect();
  return true;
}

function navigate(id) {
  const url = api.streamUrl(id);
  if (window.location.pathname !== url) window.history.pushState({ board: id }, '', url);
  showBoard(id);
}

els.select.addEventListener('change', () => {
  if (els.select.value) navigate(els.select.value);
});

window.addEventListener('popstate', () => {
  const id = boardIdFromPath() ?? defaultBoardId();
  if (id) showBoard(id);
  else showNoBoard();
});

// ---------------------------------------------------------------------------
// Forms

function nameProblem(value) {
  const length = [...value.trim()].length;
  if (length === 0) return 'Enter a name.';
  if (length > MAX_NAME_CHARS) return `Use at most ${MAX_NAME_CHARS} characters; this has ${length}.`;
  return null;
}

function idProblem(value) {
  if (value === '' || ID_PATTERN.test(value)) return null;
  return 'Use 1 to 64 letters, digits, - or _ (no spaces).';
}

function setFieldError(input, message) {
  const error = $(`${input.id}-error`);
  error.textContent = message ?? '';
  error.hidden = !message;
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

/** Shows the first problem found, on its field, and focuses that field. */
function reportProblems(checks) {
  let first = null;
  for (const [input, problem] of checks) {
    setFieldError(input, problem);
    if (problem && !first) first = input;
  }
  if (first) first.focus();
  return first !== null;
}

/**
 * Runs one submission at a time. The button stays enabled (a disabled button
 * would drop keyboard focus); a second submit while busy is ignored.
 */
function handleSubmit(form, submit) {
  let busy = false;
  const status = form.querySelector('.form-status');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (busy) return;
    busy = true;
    form.setAttribute('aria-busy', 'true');
    if (status) status.textContent = '';
    try {
      await submit(status);
    } finally {
      busy = false;
      form.removeAttribute('aria-busy');
    }
  });
}

handleSubmit(els.playerForm, async (status) => {
  const name = els.playerName.value.trim();
  if (!current || current.gone) return;
  if (reportProblems([[els.playerName, nameProblem(name)]])) return;
  const boardId = current.id;
  const board = current;
  try {
    const player = await api.createPlayer(boardId, name);
    els.playerForm.reset();
    status.textContent = `Added ${player.name}.`;
    if (current === board) {
      learnPlayers(board, [player]);
      // On a board that keeps set or best scores a new player has no score
      // and is not on the board yet: its first score goes through the form.
      if (board.state.rules.operator !== 'incr') els.scorePlayer.value = player.id;
    }
  } catch (err) {
    if (err.code === 'invalid_input') reportProblems([[els.playerName, err.message]]);
    else showNotice(`Could not add ${name}: ${err.message}`);
  }
});

function topProblem(value) {
  const top = Number(value);
  if (value !== '' && Number.isInteger(top) && top >= 1 && top <= 100) return null;
  return 'Use a whole number from 1 to 100.';
}

/** The schedule the form asks for: null, "daily", "weekly", "monthly" or a cron expression. */
function chosenReset() {
  const choice = els.boardReset.value;
  if (choice === 'cron') return els.boardCron.value.trim();
  return choice || null;
}

/**
 * A cron expression is left to the server to judge (it knows the dialect);
 * only an empty one is refused here.
 */
function cronProblem(reset) {
  if (els.boardReset.value !== 'cron' || reset) return null;
  return 'Enter a cron expression, such as “0 6 * * 1”.';
}

/** Shows the cron field only for a custom schedule. */
function showCronField() {
  const own = els.boardReset.value === 'cron';
  els.boardCronField.hidden = !own;
  if (!own) setFieldError(els.boardCron, null);
}

els.boardReset.addEventListener('change', showCronField);
// A browser that restores form fields on back/forward may restore the choice.
showCronField();

handleSubmit(els.boardForm, async (status) => {
  const name = els.boardName.value.trim();
  const id = els.boardId.value.trim();
  const top = els.boardTop.value.trim();
  const reset = chosenReset();
  if (reportProblems([
    [els.boardName, nameProblem(name)],
    [els.boardId, idProblem(id)],
    [els.boardTop, topProblem(top)],
    [els.boardCron, cronProblem(reset)],
  ])) return;
  const rules = normalizeRules({
    order: els.boardOrder.value,
    operator: els.boardOperator.value,
    top: Number(top),
  });
  const wanted = { order: rules.order, operator: rules.operator, top: rules.top };
  if (reset) wanted.reset = reset;
  try {
    const board = await api.createBoard(name, id || undefined, wanted);
    els.boardForm.reset();
    showCronField();
    knownBoards = [...knownBoards.filter((b) => b.id !== board.id), { id: board.id, name: board.name }]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    fillSelect();
    navigate(board.id);
    status.textContent = `Created board ${board.name}; it is shown now.`;
  } catch (err) {
    if (err.code === 'conflict') reportProblems([[els.boardId, 'A board with this id exists already.']]);
    else if (err.code === 'invalid_input' && err.message.startsWith('board id')) reportProblems([[els.boardId, err.message]]);
    else if (err.code === 'invalid_input' && err.message.startsWith('reset') && !els.boardCronField.hidden) reportProblems([[els.boardCron, err.message]]);
    else if (err.code === 'invalid_input' && err.message.startsWith('reset')) showNotice(`Could not create the board: ${err.message}`);
    else if (err.code === 'invalid_input' && /\btop\b/.test(err.message)) reportProblems([[els.boardTop, err.message]]);
    else if (err.code === 'invalid_input') reportProblems([[els.boardName, err.message]]);
    else showNotice(`Could not create the board: ${err.message}`);
  }
});

// Clear a field's error as soon as it is edited.
for (const input of [els.playerName, els.boardName, els.boardId, els.boardTop, els.boardCron, els.mePlayer,
  els.scorePlayer, els.scoreValue]) {
  input.addEventListener('input', () => setFieldError(input, null));
}

// ---------------------------------------------------------------------------
// Start

async function start() {
  const fromPath = boardIdFromPath();
  // A board named in the address starts streaming before the list arrives.
  if (fromPath) showBoard(fromPath);
  const listed = await refreshBoards();
  if (fromPath) return;
  const id = defaultBoardId();
  if (id) showBoard(id);
  else if (listed) showNoBoard();
}

start();
