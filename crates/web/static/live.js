// One board's live stream, through Pushpin, with EventSource.
//
// EventSource reconnects by itself after a dropped connection and sends
// Last-Event-ID, which lets the origin skip the snapshot the page already
// has. So this class leaves a connection that is retrying alone, and makes a
// new one only when the browser has given up on it for good, which it does
// when an answer is not a 200 event stream (a proxy's 502 while the origin
// restarts, a 404 for a board that is gone).
//
// It also gives up on a connection that is never answered: Pushpin, in the
// moments after it starts, can take a request and not answer it, and the
// browser would wait on it for good. A held stream is answered at once, so a
// connection that has not opened after OPEN_TIMEOUT_MS is closed and a new
// one made.

import { getBoard, streamUrl } from './api.js';

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30000;
const OPEN_TIMEOUT_MS = 10000;

export class BoardStream {
  /**
   * @param {string} boardId
   * @param {object} on callbacks: update(board), reset(period) (optional:
   *   a finished period, sent just before the new period's first update),
   *   deleted(), missing(), status('connecting' | 'live' | 'reconnecting')
   */
  constructor(boardId, on) {
    this.boardId = boardId;
    this.on = on;
    this.source = null;
    this.lastEventId = '';
    this.failures = 0;
    this.retryTimer = null;
    this.openTimer = null;
    this.stopped = false;
  }

  start() {
    this.on.status('connecting');
    this.#open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.openTimer);
    if (this.source) this.source.close();
    this.source = null;
  }

  #open() {
    let url = streamUrl(this.boardId);
    // A new EventSource cannot send the Last-Event-ID header; the origin reads
    // the same id from this query parameter, so a replacement still resumes.
    if (this.lastEventId) url += `?lastEventId=${encodeURIComponent(this.lastEventId)}`;
    const source = new EventSource(url);
    this.source = source;
    this.#watchOpening(source);

    source.addEventListener('open', () => {
      clearTimeout(this.openTimer);
      this.failures = 0;
      this.on.status('live');
    });
    source.addEventListener('update', (event) => {
      if (event.lastEventId) this.lastEventId = event.lastEventId;
      let board;
      try {
        board = JSON.parse(event.data);
      } catch {
        return; // Not a snapshot: nothing to show, and the next one will do.
      }
      this.on.update(board);
    });
    source.addEventListener('reset', (event) => {
      if (event.lastEventId) this.lastEventId = event.lastEventId;
      let period;
      try {
        period = JSON.parse(event.data);
      } catch {
        return;
      }
      this.on.reset?.(period);
    });
    source.addEventListener('deleted', () => {
      // Close before the server does, or the browser would reconnect to a 404.
      this.stop();
      this.on.deleted();
    });
    source.addEventListener('error', () => this.#failed(source));
  }

  /** Replaces `source` if it is still connecting after OPEN_TIMEOUT_MS. */
  #watchOpening(source) {
    clearTimeout(this.openTimer);
    this.openTimer = setTimeout(() => {
      if (this.stopped || source !== this.source) return;
      if (source.readyState !== EventSource.CONNECTING) return;
      source.close();
      this.#failed(source);
    }, OPEN_TIMEOUT_MS);
  }

  async #failed(source) {
    if (this.stopped || source !== this.source) return;
    this.on.status('reconnecting');
    if (source.readyState !== EventSource.CLOSED) {
      // The browser is retrying; its new attempt may go unanswered too.
      this.#watchOpening(source);
      return;
    }
    clearTimeout(this.openTimer);

    this.source = null;
    // EventSource does not say why it gave up; a plain read does.
    try {
      await getBoard(this.boardId);
    } catch (err) {
      if (err.status === 404 && err.code === 'board_not_found') {
        if (!this.stopped) {
          this.stop();
          this.on.missing();
        }
        return;
      }
    }
    if (this.stopped) return;
    // Back off exponentially, with jitter so that many pages do not return
    // to a restarted origin in the same instant.
    const ceiling = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** this.failures);
    this.failures += 1;
    this.retryTimer = setTimeout(() => this.#open(), ceiling / 2 + Math.random() * (ceiling / 2));
  }
}
