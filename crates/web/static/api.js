// The JSON API, same-origin. Every failure becomes an ApiError whose message
// can be shown to the user as it is.

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, or 0 when no answer came
   * @param {string} code the API's error code, e.g. "invalid_input"
   * @param {string} message text for the user
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/** A path segment; ids are URL-safe already, but the page never trusts that. */
const seg = (id) => encodeURIComponent(id);

async function request(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' }, cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'The server could not be reached. Check your connection and try again.');
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    // A proxy's HTML error page, say: the status alone tells what happened.
  }
  if (!response.ok) {
    const message = (data && typeof data.message === 'string' && data.message)
      || `The server answered ${response.status} ${response.statusText}`.trim();
    throw new ApiError(response.status, (data && data.error) || 'http_error', message);
  }
  return data;
}

/** `[{id, name}]`, in id order. */
export async function listBoards() {
  const data = await request('GET', '/boards/');
  return data.boards;
}

/** The board with its rules and top players, `{id, name, rules, players}`. */
export function getBoard(id) {
  return request('GET', `/boards/${seg(id)}/`);
}

/** `rules` may hold `order`, `operator`, `top` and `reset`; what it leaves out is the server's default. */
export function createBoard(name, id, rules = {}) {
  const body = { name, ...rules };
  if (id) body.id = id;
  return request('POST', '/boards/', body);
}

/** The first `limit` players in rank order, `[{id, name, score, rank}]`. */
export async function listPlayers(boardId, limit = 100) {
  const data = await request('GET', `/boards/${seg(boardId)}/players/?limit=${limit}`);
  return data.players;
}

/** `{players, out_of}`: up to `limit` players from rank `rank` on, with their ranks. */
export function pageAt(boardId, rank, limit = 10) {
  return request('GET', `/boards/${seg(boardId)}/players/?rank=${rank}&limit=${limit}`);
}

/** `{player, players, out_of}`: the player and up to `n` players above and below it, with ranks. */
export function around(boardId, playerId, n = 2) {
  return request('GET', `/boards/${seg(boardId)}/players/${seg(playerId)}/around/?n=${n}`);
}

/** The board's finished periods, newest first: `[{number, start, end, players, top}]`. */
export async function listPeriods(boardId) {
  const data = await request('GET', `/boards/${seg(boardId)}/periods/`);
  return data.periods;
}

/** One finished period, `{number, start, end, players, top}`. */
export function getPeriod(boardId, number) {
  return request('GET', `/boards/${seg(boardId)}/periods/${seg(String(number))}/`);
}

export function createPlayer(boardId, name) {
  return request('POST', `/boards/${seg(boardId)}/players/`, { name });
}

/** Adds 1 (the API's default for an empty body); answers `{id, name, score}`. */
export function addPoint(boardId, playerId) {
  return request('POST', `/boards/${seg(boardId)}/players/${seg(playerId)}/score-add/`);
}

/** Submits `value` under the board's operator; answers the player and `changed`. */
export function submitScore(boardId, playerId, value) {
  return request('POST', `/boards/${seg(boardId)}/players/${seg(playerId)}/score/`, { value });
}

/** The stream's address for a board; EventSource asks it for text/event-stream. */
export function streamUrl(boardId) {
  return `/boards/${seg(boardId)}/`;
}
