/*
 * The daemon's REST API as the console uses it. Every call carries the session's bearer
 * token; an answer that is not 2xx becomes an ApiError holding the daemon's
 * {code, message, details}, and a network failure one with STRATA_E_DAEMON_UNREACHABLE,
 * so callers always have something to show. A 401 on a session call ends the session
 * (the token was revoked or the daemon's tokens changed): the app returns to the login,
 * and the error is marked sessionEnded so the page that made the call stays quiet.
 *
 * The event stream is server-sent events, but EventSource cannot send an Authorization
 * header, so it is read with fetch and a ReadableStream and parsed here.
 */

const tokenKey = 'strata.token';

export const session = {
  get token() {
    return sessionStorage.getItem(tokenKey);
  },
  set(token) {
    sessionStorage.setItem(tokenKey, token);
  },
  clear() {
    sessionStorage.removeItem(tokenKey);
  },
};

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details ?? {};
  }
}

let unauthorized = () => undefined;

/** What to do when a session call answers 401. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** A URL with each interpolated value encoded as one path segment or query value. */
export function url(strings, ...values) {
  return strings.reduce((text, part, index) => text + encodeURIComponent(String(values[index - 1])) + part);
}

/** The 401 of a session call: the app signs out; callers need not show the error. */
function endSession(error) {
  error.sessionEnded = true;
  unauthorized(error);
}

function headersFor(token, hasBody) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (hasBody) headers['content-type'] = 'application/json';
  return headers;
}

async function failure(response) {
  const text = await response.text();
  let body;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  const message = body?.message ?? `the daemon answered HTTP ${response.status}${text ? `: ${text.slice(0, 200)}` : ''}`;
  return new ApiError(response.status, body?.code ?? `HTTP_${response.status}`, message, body?.details);
}

async function send(method, path, body, token, signal) {
  try {
    return await fetch(path, { method, headers: headersFor(token, body !== undefined), body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new ApiError(0, 'STRATA_E_DAEMON_UNREACHABLE', `the daemon did not answer (${error.message})`);
  }
}

/**
 * One API call. `options.token` replaces the session's token (the login checks a token
 * before keeping it; its 401 does not end a session).
 */
export async function request(method, path, body, options = {}) {
  const explicit = options.token !== undefined;
  const response = await send(method, path, body, explicit ? options.token : session.token, options.signal);
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401 && !explicit) endSession(error);
    throw error;
  }
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

export const api = {
  get: (path, options) => request('GET', path, undefined, options),
  post: (path, body = {}) => request('POST', path, body),
  patch: (path, body) => request('PATCH', path, body),
  delete: (path) => request('DELETE', path),
};

/** Parses one server-sent event block ("id: 3\nevent: event\ndata: {...}"). */
function parseBlock(block) {
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  }
  return data.length > 0 ? JSON.parse(data.join('\n')) : null;
}

/**
 * Reads /api/v1/events/stream from event id `after` until the stream ends or `signal`
 * aborts: onOpen once the daemon accepted the stream, onEvent for each event.
 */
export async function streamEvents(after, { onOpen, onEvent, signal }) {
  const response = await send('GET', url`/api/v1/events/stream?after=${after}`, undefined, session.token, signal);
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401) endSession(error);
    throw error;
  }
  onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = parseBlock(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event) onEvent(event);
    }
  }
}
