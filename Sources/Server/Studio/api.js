// The Studio's only way to the server: the documented JSON API (docs/api.md), as any other builder would call it.
// A signed-in browser sends its session cookie; every request that changes something carries the session's CSRF token.

let csrf = null;

/** Remembers the session's CSRF token (from POST or GET /v1/session). */
export function setCSRF(token) { csrf = token || null; }

/** An API answer that is not a success: its status and problem document (RFC 9457). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `the server answered ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

/**
 * Calls the API. `body` is sent as JSON unless it is already text (`type` says what it is).
 * Answers the parsed JSON, or the text for other content types.
 */
export async function api(method, path, body, { accept = 'application/json', type = 'application/json' } = {}) {
  const headers = { Accept: accept };
  if (body !== undefined) headers['Content-Type'] = type;
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  const response = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  const isJSON = /json/.test(response.headers.get('Content-Type') || '');
  const data = text && isJSON ? JSON.parse(text) : text;
  if (!response.ok) throw new ApiError(response.status, isJSON ? data : { detail: text });
  return data;
}

export const GRAPH = 'application/vnd.flowline.graph+json';
