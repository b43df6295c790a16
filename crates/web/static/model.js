// The board as the page shows it: the latest snapshot from the stream, with
// the user's own "+1"s laid over it until the server has confirmed them.
//
// Pure logic with no DOM, so it can be tested on its own.
//
// How a "+1" is reconciled:
//  - A click counts as pending at once, so the score goes up with no wait.
//  - When the POST answers, the pending click is dropped and the answer, the
//    player's score just after that increment, is kept as a floor for a few
//    seconds. A stream snapshot published before the increment can still be
//    on its way; the floor keeps the score from flickering back down.
//  - The floor ends as soon as the stream shows a score at least as high, or
//    after FLOOR_MS (someone else may have taken points away meanwhile: the
//    stream is the truth once it has had time to catch up).
//  - A failed POST just drops its pending click: the score rolls back.
//
// A snapshot that already counts an increment whose POST has not answered yet
// shows that click twice until the answer arrives, a few milliseconds at
// most: the publish path (database, worker, Pushpin) is slower than the POST.

/** How long a POST's answer outranks a lower score from the stream. */
export const FLOOR_MS = 5000;

/**
 * Orders players as the server does: score descending, then id descending
 * (the tie-break of the database index), so a local re-sort agrees with the
 * next snapshot.
 */
export function byRank(a, b) {
  if (a.score !== b.score) return b.score - a.score;
  if (a.id === b.id) return 0;
  return a.id < b.id ? 1 : -1;
}

export class BoardState {
  /** @param {string} id the board being shown */
  constructor(id) {
    this.id = id;
    /** The latest snapshot, `{id, name, players}`, or null before the first. */
    this.snapshot = null;
    /** player id → clicks sent and not yet answered */
    this.pending = new Map();
    /** player id → {score, until}: the highest score a POST answered */
    this.floors = new Map();
  }

  /** Takes a snapshot from the stream (or a JSON read). */
  applySnapshot(board, now = Date.now()) {
    this.snapshot = board;
    for (const [playerId, floor] of this.floors) {
      const player = board.players.find((p) => p.id === playerId);
      if (!player || player.score >= floor.score || now >= floor.until) {
        this.floors.delete(playerId);
      }
    }
  }

  /** Counts a click whose POST is about to be sent. */
  begin(playerId) {
    this.pending.set(playerId, (this.pending.get(playerId) ?? 0) + 1);
  }

  /**
   * Settles one click: `player` is the POST's answer, or null if it failed.
   */
  settle(playerId, player, now = Date.now()) {
    const left = (this.pending.get(playerId) ?? 0) - 1;
    if (left > 0) this.pending.set(playerId, left);
    else this.pending.delete(playerId);
    if (player) {
      const old = this.floors.get(playerId);
      // Answers can arrive out of order; the higher one is the later write.
      const score = old && now < old.until ? Math.max(old.score, player.score) : player.score;
      this.floors.set(playerId, { score, until: now + FLOOR_MS });
    }
  }

  /** Whether a player has clicks in flight. */
  isPending(playerId) {
    return this.pending.has(playerId);
  }

  /**
   * The board to draw: players with their shown scores, in rank order, each
   * marked `pending` while one of its clicks is unanswered. Null before the
   * first snapshot.
   */
  view(now = Date.now()) {
    if (!this.snapshot) return null;
    const players = this.snapshot.players.map((p) => {
      const floor = this.floors.get(p.id);
      const base = floor && now < floor.until ? Math.max(p.score, floor.score) : p.score;
      const pending = this.pending.get(p.id) ?? 0;
      return { id: p.id, name: p.name, score: base + pending, pending: pending > 0 };
    });
    players.sort(byRank);
    return { id: this.snapshot.id, name: this.snapshot.name, players };
  }

  /** When the next floor runs out (so the page can redraw then), or null. */
  nextExpiry() {
    let next = null;
    for (const { until } of this.floors.values()) {
      if (next === null || until < next) next = until;
    }
    return next;
  }
}
