// The leaderboard page: shows one board live, and lets the user switch
// boards, give players points and create boards and players.
//
// The DOM is built with createElement and textContent only (names come from
// users), and nothing here needs inline script or style, so the page runs
// under a strict Content-Security-Policy.

import * as api from './api.js';
import { BoardStream } from './live.js';
import { BoardState } from './model.js';

const $ = (id) => document.getElementById(id);
const els = {
  connection: $('connection'),
  connectionText: $('connection-text'),
  select: $('board-select'),
  title: $('board-title'),
  players: $('players'),
  message: $('board-message'),
  notice: $('notice'),
  noticeText: $('notice-text'),
  noticeClose: $('notice-close'),
  announcer: $('announcer'),
  playerForm: $('new-player'),
  playerName: $('player-name'),
  boardForm: $('new-board'),
  boardName: $('board-name'),
  boardId: $('board-id'),
};

const reducedMotion = window.matchMedia('(prefers-reduced-motion: reduce)');
const ordinalRules = new Intl.PluralRules('en', { type: 'ordinal' });
const ORDINAL_SUFFIX = { one: 'st', two: 'nd', few: 'rd', other: 'th' };
const ordinal = (n) => `${n}${ORDINAL_SUFFIX[ordinalRules.select(n)]}`;
const points = (n) => `${n} ${n === 1 || n === -1 ? 'point' : 'points'}`;
const numberFormat = new Intl.NumberFormat();

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
      this.players.forEach((player, i) => {
        const was = this.spokenRanks.get(player.id);
        const rank = ordinal(i + 1);
        if (was === undefined) texts.push(`${player.name} entered the board at ${rank} place.`);
        else if (i + 1 < was) texts.push(`${player.name} moved up to ${rank} place.`);
      });
      this.spokenRanks = ranksOf(this.players);
    }
    if (texts.length > 3) texts.splice(2, texts.length, 'Other places changed too.');
    texts.push(...this.notes.values());
    this.notes.clear();
    if (texts.length) this.region.textContent = texts.join(' ');
  }
}

const ranksOf = (players) => new Map(players.map((p, i) => [p.id, i + 1]));

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
  element.classList.remove('up', 'down');
  void element.offsetWidth; // a reflow, so the animation starts over
  element.classList.add(className);
}

function updateRow(li, player, rank) {
  const { parts } = li;
  const rankText = String(rank);
  if (parts.rank.textContent !== rankText) parts.rank.textContent = rankText;
  li.dataset.rank = rankText;
  if (parts.name.textContent !== player.name) {
    parts.name.textContent = player.name;
    parts.forWhom.textContent = ` point for ${player.name}`;
  }
  const scoreText = numberFormat.format(player.score);
  if (parts.value.textContent !== scoreText) {
    const before = li.score;
    parts.value.textContent = scoreText;
    parts.unit.textContent = player.score === 1 || player.score === -1 ? ' point' : ' points';
    if (before !== undefined) flash(li, player.score > before ? 'up' : 'down');
  }
  li.score = player.score;
  li.classList.toggle('pending', player.pending);
}

/**
 * Brings the list in line with `players` (already in rank order), moving
 * rows rather than rebuilding them, and slides each moved row from where it
 * was to where it is now (the FLIP technique).
 */
function renderPlayers(players, animate) {
  const list = els.players;
  const firstTops = new Map();
  if (animate) {
    for (const li of list.children) firstTops.set(li.dataset.id, li.getBoundingClientRect().top);
  }
  const focused = list.contains(document.activeElement) ? document.activeElement : null;

  const wanted = players.map((player, i) => {
    let li = rows.get(player.id);
    if (!li) {
      li = makeRow(player);
      rows.set(player.id, li);
    }
    updateRow(li, player, i + 1);
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

/** `{id, state, stream, drawn, expiryTimer, gone}` for the board on screen. */
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
  renderPlayers(view.players, !reducedMotion.matches && current.drawn);
  current.drawn = true;
  announcer.drawn(view.players);
  if (!current.gone) setBoardMessage(view.players.length ? '' : 'No players yet. Add the first one with the form.');

  // A POST's answer holds a score up for a few seconds; redraw when it lapses.
  clearTimeout(current.expiryTimer);
  const expiry = current.state.nextExpiry();
  if (expiry !== null) {
    current.expiryTimer = setTimeout(scheduleRender, Math.max(0, expiry - Date.now()) + 20);
  }
}

function resetBoardView(title) {
  announcer.reset();
  rows.clear();
  els.players.replaceChildren();
  els.title.textContent = title;
  setBoardMessage('');
}

/** Shows board `id`, following it live. */
function showBoard(id) {
  if (current && current.id === id && !current.gone) return;
  if (current) {
    current.stream.stop();
    clearTimeout(current.expiryTimer);
  }
  resetBoardView(id);
  setBoardMessage('Loading…');
  // "Added Zoë." belongs to the board that was shown.
  for (const status of document.querySelectorAll('.form-status')) status.textContent = '';
  selectBoard(id);
  els.playerForm.querySelector('button').disabled = false;

  const board = { id, state: new BoardState(id), stream: null, drawn: false, expiryTimer: null, gone: false };
  board.stream = new BoardStream(id, {
    status: (state) => { if (current === board) setStatus(state); },
    update: (snapshot) => {
      if (current !== board) return;
      board.state.applySnapshot(snapshot);
      scheduleRender();
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
  board.stream.start();
}

function boardGone(board, message) {
  board.gone = true;
  setStatus('offline');
  rows.clear();
  els.players.replaceChildren();
  setBoardMessage(message);
  els.playerForm.querySelector('button').disabled = true;
}

function showNoBoard() {
  if (current) current.stream.stop();
  current = null;
  resetBoardView('No boards yet');
  setBoardMessage('Create the first board with the form.');
  setStatus('offline');
  els.playerForm.querySelector('button').disabled = true;
}

// ---------------------------------------------------------------------------
// "+1"

els.players.addEventListener('click', (event) => {
  const button = event.target.closest('button.plus');
  if (!button) return;
  const li = button.closest('li');
  addPoint(li.dataset.id, li.parts.name.textContent);
});

async function addPoint(playerId, playerName) {
  const board = current;
  board.state.begin(playerId);
  scheduleRender();
  try {
    const player = await api.addPoint(board.id, playerId);
    board.state.settle(playerId, player);
    if (current === board) {
      hideNotice();
      announcer.say(`score:${playerId}`, `${player.name} has ${points(player.score)}.`);
    }
  } catch (err) {
    board.state.settle(playerId, null);
    if (current === board) showNotice(`Could not add a point for ${playerName}: ${err.message}`);
  }
  if (current === board) scheduleRender();
}

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
    status.textContent = '';
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
  try {
    const player = await api.createPlayer(boardId, name);
    els.playerForm.reset();
    status.textContent = `Added ${player.name}.`;
  } catch (err) {
    if (err.code === 'invalid_input') reportProblems([[els.playerName, err.message]]);
    else showNotice(`Could not add ${name}: ${err.message}`);
  }
});

handleSubmit(els.boardForm, async (status) => {
  const name = els.boardName.value.trim();
  const id = els.boardId.value.trim();
  if (reportProblems([[els.boardName, nameProblem(name)], [els.boardId, idProblem(id)]])) return;
  try {
    const board = await api.createBoard(name, id || undefined);
    els.boardForm.reset();
    knownBoards = [...knownBoards.filter((b) => b.id !== board.id), { id: board.id, name: board.name }]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    fillSelect();
    navigate(board.id);
    status.textContent = `Created board ${board.name}; it is shown now.`;
  } catch (err) {
    if (err.code === 'conflict') reportProblems([[els.boardId, 'A board with this id exists already.']]);
    else if (err.code === 'invalid_input' && err.message.startsWith('board id')) reportProblems([[els.boardId, err.message]]);
    else if (err.code === 'invalid_input') reportProblems([[els.boardName, err.message]]);
    else showNotice(`Could not create the board: ${err.message}`);
  }
});

// Clear a field's error as soon as it is edited.
for (const input of [els.playerName, els.boardName, els.boardId]) {
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
