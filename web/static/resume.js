// Keeping a call going when the server loses it (a crash, a restart, a
// deploy): the page joins the same room again with its token, through the
// ordinary join path (new media, new key sessions, the usual identity
// checks), with exponential backoff and jitter, for up to a minute, as the
// Go SDK does (client/resume.go). The people in the call come back under
// new participant ids; they are recognised by identity (one participant
// per identity in a room).

import { ApiError } from './api.js';

/** How long after losing the call the page keeps trying to rejoin it. */
export const RESUME_WINDOW_MS = 60000;
/** First pause before a rejoin; it doubles after each failed attempt up to
 *  REJOIN_MAX_DELAY_MS. Each pause is drawn between half and all of its
 *  value, so that the callers of a room do not come back in lockstep. */
const REJOIN_DELAY_MS = 200;
const REJOIN_MAX_DELAY_MS = 2000;
/** How long after a rejoin the people the call knew have to come back
 *  before they are taken for gone: they rejoin on their own schedule. */
export const RETURN_GRACE_MS = 10000;

/** Why a session ended, when a new join cures it: the server went away or
 *  forgot the session, the media path or the event stream failed, or the
 *  server took the caller for frozen. Leaving, being replaced by another
 *  join and the end of the call are final. */
const RESUMABLE = new Set(['server_shutdown', 'room_moved', 'session_lost', 'disconnected', 'dropped', 'connection_lost', 'ice_failed', 'timeout']);

export function resumable(reason) {
  return RESUMABLE.has(reason);
}

/** A join refused for a reason that waiting does not change: the token or
 *  the room will not do (expired, another room, ended: 410), or the
 *  request itself is wrong. The server starting, busy or full may pass. */
function final(err) {
  return (
    err instanceof ApiError &&
    ['unauthorized', 'token_expired', 'wrong_room', 'invalid_name', 'call_ended', 'forbidden', 'invalid_sdp', 'unsupported_codec', 'bad_request', 'invalid_json'].includes(err.code)
  );
}

/** The expiry (ms since the epoch) a room token claims, read without
 *  checking it (the server does); Infinity if it cannot be read. */
export function tokenExpiry(token) {
  try {
    const body = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(body)).exp;
    return Number.isFinite(exp) ? exp * 1000 : Infinity;
  } catch {
    return Infinity;
  }
}

/** Why a resumption gave up: kind 'window' (not back within the window),
 *  'expired' (the token ran out), 'refused' (cause: the final ApiError) or
 *  'cancelled' (the caller left). */
export class ResumeError extends Error {
  constructor(kind, cause) {
    super(`call not resumed: ${kind}${cause ? `: ${(cause && cause.message) || cause}` : ''}`);
    this.name = 'ResumeError';
    this.kind = kind;
    this.cause = cause;
  }
}

/**
 * Resumption runs the rejoins of one lost call.
 *
 * attempt() joins once and resolves when the page is back in the room; it
 * rejects when that join failed, after cleaning up after itself.
 */
export class Resumption {
  /**
   * @param {object} o
   * @param {string} o.token  the room token
   * @param {() => Promise<void>} o.attempt
   * @param {number} [o.retryAfterMs]  the server's hint (closed
   *   server_shutdown): the first attempt comes after it, spread by a
   *   random part of it
   * @param {number} [o.windowMs]
   */
  constructor({ token, attempt, retryAfterMs = 0, windowMs = RESUME_WINDOW_MS }) {
    this.lostAt = Date.now();
    this.deadline = this.lostAt + windowMs;
    this.expiry = tokenExpiry(token);
    this.attempts = 0;
    this._attempt = attempt;
    this._retryAfterMs = retryAfterMs > 0 ? retryAfterMs : 0;
    this._cancelled = false;
    this._wake = null;
  }

  /** Resolves with the time it took once back in the room; rejects with a
   *  ResumeError when giving up. */
  async run() {
    let delay = REJOIN_DELAY_MS;
    let pause = this._retryAfterMs ? this._retryAfterMs * (1 + Math.random()) : delay * (0.5 + Math.random() / 2);
    let last = null;
    for (;;) {
      const at = Date.now() + pause;
      if (at > this.expiry) throw new ResumeError('expired');
      if (at > this.deadline) throw new ResumeError('window', last);
      await this._sleep(pause);
      if (this._cancelled) throw new ResumeError('cancelled');
      this.attempts++;
      try {
        await this._attempt();
        if (this._cancelled) throw new ResumeError('cancelled');
        return Date.now() - this.lostAt;
      } catch (err) {
        if (err instanceof ResumeError) throw err;
        if (this._cancelled) throw new ResumeError('cancelled');
        if (final(err)) throw new ResumeError(err.code === 'token_expired' ? 'expired' : 'refused', err);
        console.info('rejoin failed; retrying:', (err && err.message) || err);
        last = err;
      }
      delay = Math.min(2 * delay, REJOIN_MAX_DELAY_MS);
      pause = delay * (0.5 + Math.random() / 2);
    }
  }

  /** Stops at the next step: the caller left. */
  cancel() {
    this._cancelled = true;
    if (this._wake) this._wake();
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this._wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}

/**
 * Returning holds the people a call knew when it lost its join, by
 * identity, until they are back in the room (under a new participant id)
 * or given up.
 */
export class Returning {
  constructor() {
    this._byIdentity = new Map();
    this._timer = 0;
  }

  /** Expects person (anything with an identity) back. */
  expect(person) {
    if (person.identity) this._byIdentity.set(person.identity, person);
  }

  /** Returns, once, the person expected back with identity, or null. */
  claim(identity) {
    const p = this._byIdentity.get(identity);
    if (!p) return null;
    this._byIdentity.delete(identity);
    return p;
  }

  /** Gives up, RETURN_GRACE_MS from now, on those not back by then:
   *  gone(person) is called for each. A later call moves the deadline. */
  giveUpLater(gone) {
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this.giveUp(gone), RETURN_GRACE_MS);
  }

  /** Forgets everyone still expected, now, calling gone(person) for each. */
  giveUp(gone) {
    clearTimeout(this._timer);
    const left = [...this._byIdentity.values()];
    this._byIdentity.clear();
    for (const p of left) gone(p);
  }

  /** Stops waiting without giving up on anyone: the call is over. */
  clear() {
    clearTimeout(this._timer);
    this._byIdentity.clear();
  }

  /** Pauses the grace while the call itself is rejoining. */
  pause() {
    clearTimeout(this._timer);
  }
}
