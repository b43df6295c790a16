// The board as the page shows it: the latest snapshot from the stream, with
// the user's own writes laid over it until the server has confirmed them.
//
// Pure logic with no DOM, so it can be tested on its own.
//
// Two kinds of write:
//  - "add": a "+1" (score-add), or a `score/` submission on an `incr` board.
//    It raises the number, whatever the board's order: on an `asc` board
//    that is a worse score, and the player moves down.
//  - "submit": a `score/` submission on a `set` board (the value replaces
//    the score) or a `best` board (the better of the two, under the
//    board's order, is kept).
//
// How a write is reconciled:
//  - It counts as pending at once, so the score changes with no wait.
//  - When the POST answers, the pending write is dropped and the answer, the
//    player's score just after that write, is held for a few seconds. A
//    stream snapshot published before the write can still be on its way;
//    the hold keeps the score from flickering back.
//  - The hold ends as soon as the stream has caught up with the answer, or
//    after HOLD_MS (someone else may have changed the score meanwhile: the
//    stream is the truth once it has had time to catch up). What "caught
//    up" means depends on the write: an add only ever raises the number, so
//    any snapshot score at least as high; a `best` only ever improves the
//    score under the board's order, so any score at least as good; a `set`
//    can go either way, so only the very score it answered.
//  - A failed POST just drops its pending write: the score rolls back.
//
// A snapshot that already counts a write whose POST has not answered yet
// shows that write twice (for an add) until the answer arrives, a few
// milliseconds at most: the publish path (database, worker, Pushpin) is
// slower than the POST.

import { better, isBetter, normalizeRules, rankComparator } from './rules.js';

/** How long a POST's answer outranks an older score from the stream. */
export const HOLD_MS = 5000;

/** Orders players as the server does on a `desc` board (the default). */
export const byRank = rankComparator('desc');

/**
 * How a write answered by the server is held: "add", "best" or "set". An
 * add of a negative value lowers the number, so the stream catching up
 * cannot be told by a higher score: it is held as exactly as a `set`.
 */
function holdKind(write, operator) {
  if (write.kind === 'add' || operator === 'incr') return write.value < 0 ? 'set' : 'add';
  return operator === 'best' ? 'best' : 'set';
}

/** Whether the stream's `score` already shows a held answer. */
function caughtUp(kind, order, score, held) {
  if (typeof score !== 'number') return false;
  if (kind === 'add') return score >= held;
  if (kind === 'best') return !isBetter(order, held, score);
  return score === held;
}

/** The score to show for the stream's `score` while `held` is in force. */
function withHold(kind, order, score, held) {
  if (typeof score !== 'number') return held;
  if (kind === 'add') return Math.max(score, held);
  if (kind === 'best') return better(order, score, held);
  return held;
}

/** `score` after `write`, as the board's operator would make it. */
function applyWrite(write, operator, order, score) {
  const base = typeof score === 'number' ? score : null;
  if (write.kind === 'add' || operator === 'incr') return (base ?? 0) + write.value;
  if (operator === 'best') return base === null ? write.value : better(order, base, write.value);
  return write.value;
}

export class BoardState {
  /** @param {string} id the board being shown */
  constructor(id) {
    this.id = id;
    /** The latest snapshot, `{id, name, rules, players, ...}`, or null before the first. */
    this.snapshot = null;
    /** player id → writes sent and not yet answered, oldest first */
    this.pending = new Map();
    /** player id → {score, until, kind}: the answer a POST gave, held */
    this.holds = new Map();
  }

  /** The board's rules, every field filled in (the defaults before a snapshot). */
  get rules() {
    return normalizeRules(this.snapshot?.rules);
  }

  /** Takes a snapshot from the stream (or a JSON read). */
  applySnapshot(board, now = Date.now()) {
    this.snapshot = board;
    const { order } = this.rules;
    for (const [playerId, hold] of this.holds) {
      const player = board.players.find((p) => p.id === playerId);
      if (!player || now >= hold.until || caughtUp(hold.kind, order, player.score, hold.score)) {
        this.holds.delete(playerId);
      }
    }
  }

  /**
   * Counts a write whose POST is about to be sent: by default a "+1"; or
   * `{kind: 'submit', value}` for a `score/` submission. Returns a token
   * for `settle`.
   */
  begin(playerId, write = { kind: 'add', value: 1 }) {
    const token = { kind: write.kind === 'submit' ? 'submit' : 'add', value: write.value ?? 1 };
    const list = this.pending.get(playerId) ?? [];
    list.push(token);
    this.pending.set(playerId, list);
    return token;
  }

  /**
   * Settles one write: `player` is the POST's answer, or null if it failed.
   * `token` is what `begin` returned; without it, the oldest write settles.
   */
  settle(playerId, player, now = Date.now(), token = undefined) {
    const list = this.pending.get(playerId) ?? [];
    const at = token ? list.indexOf(token) : 0;
    const [write] = at >= 0 ? list.splice(at, 1) : [];
    if (!list.length) this.pending.delete(playerId);
    if (!player || typeof player.score !== 'number') return;

    const { order, operator } = this.rules;
    const kind = holdKind(write ?? { kind: 'add', value: 1 }, operator);
    const old = this.holds.get(playerId);
    let score = player.score;
    // Answers can arrive out of order. An add only raises the number and a
    // `best` only improves it, so the further one is the later write; a
    // `set` can go either way, and the one answered last is taken.
    if (old && old.kind === kind && now < old.until) {
      if (kind === 'add') score = Math.max(old.score, score);
      else if (kind === 'best') score = better(order, old.score, score);
    }
    this.holds.set(playerId, { score, until: now + HOLD_MS, kind });
  }

  /** Whether a player has writes in flight. */
  isPending(playerId) {
    return this.pending.has(playerId);
  }

  /**
   * The board to draw: `{id, name, rules, players}`, the players with their
   * shown scores, in rank order under the board's order, each marked
   * `pending` while one of its writes is unanswered. Ranks belong to the
   * places, not to the players: the player shown in the first place has
   * the rank the snapshot gave that place, so an optimistic re-sort moves
   * players through the server's ranks. Null before the first snapshot.
   */
  view(now = Date.now()) {
    if (!this.snapshot) return null;
    const rules = this.rules;
    const { order, operator } = rules;
    const placeRanks = this.snapshot.players.map((p, i) => (Number.isInteger(p.rank) ? p.rank : i + 1));
    const players = this.snapshot.players.map((p) => {
      const hold = this.holds.get(p.id);
      let score = hold && now < hold.until ? withHold(hold.kind, order, p.score, hold.score) : p.score;
      const writes = this.pending.get(p.id) ?? [];
      for (const write of writes) score = applyWrite(write, operator, order, score);
      return { id: p.id, name: p.name, score, pending: writes.length > 0 };
    });
    players.sort(rankComparator(order));
    players.forEach((p, i) => {
      p.rank = placeRanks[i] ?? i + 1;
    });
    return { id: this.snapshot.id, name: this.snapshot.name, rules, players };
  }

  /** When the next hold runs out (so the page can redraw then), or null. */
  nextExpiry() {
    let next = null;
    for (const { until } of this.holds.values()) {
      if (next === null || until < next) next = until;
    }
    return next;
  }
}
