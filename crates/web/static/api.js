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

/** The board with its top players, `{id, name, players}`. */
export function getBoard(id) {
  return request('GET', `/boards/${seg(id)}/`);
}

export function createBoard(name, id) {
  return request('POST', '/boards/', id ? { name, id } : { name });
}

export function createPlayer(boardId, name) {
  return request('POST', `/boards/${seg(boardId)}/players/`, { name });
}

/** Adds 1 (the API's default for an empty body); answers `{id, name, score}`. */
export function addPoint(boardId, playerId) {
  return request('POST', `/boards/${seg(boardId)}/players/${seg(playerId)}/score-add/`);
}

/** The stream's address for a board; EventSource asks it for text/event-stream. */
export function streamUrl(boardId) {
  return `/boards/${seg(boardId)}/`;
}
