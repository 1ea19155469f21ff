// The signaling API (docs/API.md) over fetch, with errors a person can read.

/** An error answer of the server: code is the API error code; nodeURL
 *  names the node that runs the room with code wrong_node. */
export class ApiError extends Error {
  constructor(status, code, message, nodeURL = '') {
    super(message || code);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.nodeURL = nodeURL;
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
    throw new ApiError(resp.status, e ? e.code : `http_${resp.status}`, e ? e.message : resp.statusText, (e && e.node_url) || '');
  }
  return data;
}

/** The end-to-end encryption this page implements (docs/PROTOCOL.md),
 *  declared at join; a participant that declares another cannot be heard. */
export const E2EE = 'sotto-1';

// In a cluster a room runs on one node, which may not be the one that
// served this page: the base URL of the node each room was found on, ''
// for this page's own server. The page keeps its origin (its identity and
// contacts are stored there) and calls the other node across origins.
const nodes = new Map();
const MAX_NODE_HOPS = 2;

function base(room) {
  return nodes.get(room) || '';
}

/** Sends a request about room to the node that runs it: a wrong_node
 *  answer is followed to the node it names. A node remembered from an
 *  earlier join that no longer answers (it stopped, the room moved) is
 *  forgotten and the page's own server asked again. */
async function toRoom(room, send) {
  for (let hops = 0; ; hops++) {
    const b = base(room);
    try {
      return await send(b);
    } catch (err) {
      if (err instanceof ApiError && err.code === 'wrong_node' && err.nodeURL && hops < MAX_NODE_HOPS) {
        nodes.set(room, err.nodeURL.replace(/\/+$/, ''));
        continue;
      }
      if (b !== '' && hops < MAX_NODE_HOPS && !(err instanceof ApiError && err.status < 500)) {
        nodes.delete(room);
        continue;
      }
      throw err;
    }
  }
}

/** The room a token admits to, read from its claims (docs/API.md,
 *  Tokens); '' if it cannot be read. Only the server verifies tokens. */
function roomOf(token) {
  try {
    const claims = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(claims)).room || '';
  } catch {
    return '';
  }
}

/** The WebSocket URL of an event stream (events_url of a join) of room. */
function eventsURL(room, path, session) {
  const u = new URL(path, base(room) || location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.searchParams.set('session', session);
  return u.href;
}

export const api = {
  createCall: (name) => request('POST', '/v1/calls', { body: { name } }),
  inspectInvite: (invite) => request('POST', '/v1/invites/inspect', { body: { invite } }),
  // A knock (202, with an id) unless the door is open: then the token. In
  // a cluster the node that runs the call answers (after a wrong_node),
  // and the knock waits there.
  redeemInvite: async (invite, name) => {
    for (let b = '', hops = 0; ; hops++) {
      try {
        const r = await request('POST', `${b}/v1/invites/redeem`, { body: { invite, name } });
        const node = (r && r.node_url) || b;
        if (r && r.room && node) nodes.set(r.room, node.replace(/\/+$/, ''));
        return r;
      } catch (err) {
        if (err instanceof ApiError && err.code === 'wrong_node' && err.nodeURL && hops < MAX_NODE_HOPS) {
          b = err.nodeURL.replace(/\/+$/, '');
          continue;
        }
        throw err;
      }
    }
  },
  // Knock k's state, once answered or after waitS seconds (below TIMEOUT_MS).
  waitKnock: (k, waitS) =>
    request('GET', `${base(k.room)}/v1/knocks/${encodeURIComponent(k.id)}?wait=${waitS}`, { knock: k.secret }),
  withdrawKnock: (k) =>
    request('DELETE', `${base(k.room)}/v1/knocks/${encodeURIComponent(k.id)}`, { knock: k.secret, keepalive: true }),
  answerKnock: (room, token, id, action) =>
    toRoom(room, (b) => request('POST', `${b}/v1/rooms/${encodeURIComponent(room)}/knocks/${encodeURIComponent(id)}/${action}`, { token })),
  setDoor: (room, token, door) =>
    toRoom(room, (b) => request('PUT', `${b}/v1/rooms/${encodeURIComponent(room)}/door`, { token, body: { door } })),
  iceServers: (token) => request('GET', '/v1/ice-servers', { token }),
  join: async (room, token, sdp, replaces) => {
    const body = replaces ? { sdp, e2ee: E2EE, replaces } : { sdp, e2ee: E2EE };
    const jr = await toRoom(room, (b) =>
      request('POST', `${b}/v1/rooms/${encodeURIComponent(room)}/join`, { token, body }),
    );
    // The node that runs the call, when the join went through another
    // address (a load balancer): the event stream and leave go there.
    if (jr.node_url) nodes.set(room, jr.node_url.replace(/\/+$/, ''));
    return jr;
  },
  eventsURL,
  leave: (room, id, session) =>
    request('DELETE', `${base(room)}/v1/rooms/${encodeURIComponent(room)}/participants/${encodeURIComponent(id)}`, { session }),
  endCall: (room, token) => toRoom(room, (b) => request('POST', `${b}/v1/rooms/${encodeURIComponent(room)}/end`, { token })),
  uploadPrekeys: (token, upload) => request('PUT', '/v1/prekeys', { token, body: upload }),
  // The node that runs the token's room knows who is in it.
  fetchPrekeys: (token, identity) =>
    toRoom(roomOf(token), (b) => request('GET', `${b}/v1/prekeys/${encodeURIComponent(identity)}`, { token })),
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
      case 'store_unavailable':
      case 'retry':
        return 'The server cannot take the call right now. Try again in a moment.';
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
