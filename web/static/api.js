// The signaling API (docs/API.md) over fetch, with errors a person can read.

/** An error answer of the server: code is the API error code. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/** The server could not be reached at all. */
export class UnreachableError extends Error {
  constructor(cause) {
    super('The Sotto server cannot be reached. Check your connection and try again.');
    this.name = 'UnreachableError';
    this.cause = cause;
  }
}

const TIMEOUT_MS = 20000;

async function request(method, path, { token, session, knock, body, keepalive } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (session) headers.Authorization = `Session ${session}`;
  if (knock) headers.Authorization = `Knock ${knock}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      keepalive: !!keepalive,
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (err) {
    throw new UnreachableError(err);
  }
  if (resp.status === 204) return null;
  let data = null;
  try {
    data = await resp.json();
  } catch {
    // A proxy's HTML error page, or an empty body.
  }
  if (!resp.ok) {
    const e = data && data.error;
    if (!e && resp.status >= 500) throw new UnreachableError(new Error(`HTTP ${resp.status}`));
    throw new ApiError(resp.status, e ? e.code : `http_${resp.status}`, e ? e.message : resp.statusText);
  }
  return data;
}

/** The end-to-end encryption this page implements (docs/PROTOCOL.md),
 *  declared at join; a participant that declares another cannot be heard. */
export const E2EE = 'sotto-1';

export const api = {
  createCall: (name) => request('POST', '/v1/calls', { body: { name } }),
  inspectInvite: (invite) => request('POST', '/v1/invites/inspect', { body: { invite } }),
  // A knock (202, with an id) unless the door is open: then the token.
  redeemInvite: (invite, name) => request('POST', '/v1/invites/redeem', { body: { invite, name } }),
  // The knock's state, once answered or after waitS seconds (below TIMEOUT_MS).
  waitKnock: (id, secret, waitS) => request('GET', `/v1/knocks/${encodeURIComponent(id)}?wait=${waitS}`, { knock: secret }),
  withdrawKnock: (id, secret) => request('DELETE', `/v1/knocks/${encodeURIComponent(id)}`, { knock: secret, keepalive: true }),
  answerKnock: (room, token, id, action) =>
    request('POST', `/v1/rooms/${encodeURIComponent(room)}/knocks/${encodeURIComponent(id)}/${action}`, { token }),
  setDoor: (room, token, door) => request('PUT', `/v1/rooms/${encodeURIComponent(room)}/door`, { token, body: { door } }),
  iceServers: (token) => request('GET', '/v1/ice-servers', { token }),
  join: (room, token, sdp, replaces) =>
    request('POST', `/v1/rooms/${encodeURIComponent(room)}/join`, { token, body: replaces ? { sdp, e2ee: E2EE, replaces } : { sdp, e2ee: E2EE } }),
  leave: (room, id, session) =>
    request('DELETE', `/v1/rooms/${encodeURIComponent(room)}/participants/${encodeURIComponent(id)}`, { session }),
  endCall: (room, token) => request('POST', `/v1/rooms/${encodeURIComponent(room)}/end`, { token }),
  uploadPrekeys: (token, upload) => request('PUT', '/v1/prekeys', { token, body: upload }),
  fetchPrekeys: (token, identity) => request('GET', `/v1/prekeys/${encodeURIComponent(identity)}`, { token }),
};

/** A sentence for a person about err, whatever threw it. */
export function describeError(err) {
  if (err instanceof UnreachableError) return err.message;
  if (err instanceof ApiError) {
    switch (err.code) {
      case 'invite_expired':
        return 'This invite link has expired. Ask for a new one.';
      case 'invite_invalid':
        return 'This invite link is not valid. Check that you copied all of it, or ask for a new one.';
      case 'call_ended':
        return 'This call has ended.';
      case 'room_full':
        return 'This call is full.';
      case 'too_many_rooms':
        return 'The server is busy right now. Try again in a few minutes.';
      case 'rate_limited':
        return 'Too many calls from this address. Wait a minute and try again.';
      case 'too_many_knocks':
        return 'Too many people are waiting to be let in right now. Try again in a few minutes.';
      case 'knock_answered':
        return 'Someone answered that request already.';
      case 'invalid_name':
        return 'Names may use letters, digits, dots, dashes and underscores (up to 40).';
      case 'unauthorized':
      case 'token_expired':
      case 'wrong_room':
        return 'Your pass for this call is no longer valid. Open the invite link again.';
      case 'shutting_down':
        return 'The server is restarting. Try again in a moment.';
      case 'blob_too_large':
        return 'This file is larger than the server accepts.';
      case 'room_quota_exceeded':
        return 'This call has shared as many files as the server keeps at once. Try again when earlier ones have expired.';
      case 'blob_storage_full':
        return 'The server is storing all the files it can right now. Try again later.';
      case 'blob_not_found':
        return 'This file is no longer on the server (files are deleted after a while, and when the call ends).';
      default:
        return `The server refused: ${err.message}`;
    }
  }
  if (err && err.name === 'NotAllowedError') {
    return 'Microphone access was denied. Allow the microphone for this site (the icon in the address bar) and try again.';
  }
  if (err && err.name === 'NotFoundError') return 'No microphone was found. Connect one and try again.';
  if (err && err.name === 'NotReadableError') return 'The microphone is in use by another application.';
  return (err && err.message) || String(err);
}
