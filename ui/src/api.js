// Every call of the console goes through `api`: Basic credentials from sessionStorage (this tab
// only), `X-Requested-With` so a 401 comes without a browser login dialog, Ditto's error JSON
// turned into an ApiError.

const KEY = 'ferrule.console.auth';
const listeners = new Set();

export function credentials() {
  return sessionStorage.getItem(KEY);
}

export function basic(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export function signIn(token) {
  sessionStorage.setItem(KEY, token);
}

export function signOut(reason) {
  sessionStorage.removeItem(KEY);
  for (const l of listeners) l(reason || null);
}

/** `fn(reason)` is called when the session ends (sign-out, or a 401 from any call). */
export function onSignOut(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export const WRONG_CREDENTIALS = 'Wrong user name or password.';

export class ApiError extends Error {
  constructor(status, body) {
    const message =
      (body && typeof body === 'object' && body.message) ||
      (typeof body === 'string' && body) ||
      `HTTP ${status}`;
    super(message);
    this.status = status;
    this.body = body && typeof body === 'object' ? body : { status, message };
  }
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  const type = response.headers.get('content-type') || '';
  if (type.includes('json')) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

/**
 * `path` below the origin; `opts`: method, json (a value sent as JSON), body + contentType,
 * headers, signal, token (credentials to use instead of the session's), stream (answer the
 * Response itself).
 * Resolves to {status, body, etag, headers}.
 */
export async function api(path, opts = {}) {
  const headers = { 'X-Requested-With': 'XMLHttpRequest', Accept: 'application/json' };
  const token = opts.token || credentials();
  if (token) headers.Authorization = `Basic ${token}`;
  let body = opts.body;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers['Content-Type'] = 'application/json';
  } else if (opts.contentType) {
    headers['Content-Type'] = opts.contentType;
  }
  Object.assign(headers, opts.headers || {});
  const response = await fetch(path, {
    method: opts.method || 'GET',
    headers,
    body,
    signal: opts.signal,
    cache: 'no-store',
    credentials: 'omit',
  });
  if (response.status === 401) {
    const answer = await readBody(response);
    // Only the gateway's refusal ends the session: a 401 of a broker (a dry run's
    // connectivity:connection.unauthorized) is the connection's error, shown where it occurred.
    const refused = !answer || answer.error === 'gateway:authentication.failed';
    if (refused && !opts.token) signOut(WRONG_CREDENTIALS);
    throw new ApiError(401, answer);
  }
  if (opts.stream && response.ok) return response;
  const answer = await readBody(response);
  if (!response.ok && response.status !== 304) throw new ApiError(response.status, answer);
  return {
    status: response.status,
    body: answer,
    etag: response.headers.get('etag'),
    headers: response.headers,
  };
}

export const enc = encodeURIComponent;

/** The revision in an `ETag: "rev:N"`. */
export function revisionOf(etag) {
  const m = /rev:(\d+)/.exec(etag || '');
  return m ? Number(m[1]) : null;
}

/**
 * Reads a server-sent event stream from `response` and calls `onEvent({event, data, id})` for
 * each event; comments (`:` lines, keep-alives) are skipped.
 */
export async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let data = [];
  let event = '';
  let id = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let nl;
    while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer[nl] === '\r' && buffer[nl + 1] === '\n' ? 2 : 1));
      if (line === '') {
        if (data.length) onEvent({ event: event || 'message', data: data.join('\n'), id });
        data = [];
        event = '';
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? '' : line.slice(colon + 1);
      if (val.startsWith(' ')) val = val.slice(1);
      if (field === 'data') data.push(val);
      else if (field === 'event') event = val;
      else if (field === 'id') id = val;
    }
  }
}
