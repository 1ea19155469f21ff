// The Double Ratchet session of docs/PROTOCOL.md §5 (Signal's
// specification without header encryption, AES-256-GCM message AEAD).
// Sessions are created by pqxdh.js (initiateSession / acceptSession).
//
// Every public method runs under a per-session lock: WebCrypto is
// asynchronous and the ratchet state must change one message at a time.
// A message that fails to decrypt leaves the session unchanged.

import { concat, equal, randomBytes, readU32, toHex, u32, utf8, wipe } from './bytes.js';
import { ProtocolError } from './errors.js';
import { INIT_PREFIX_SIZE, PAYLOAD_VERSION, RATCHET_HEADER_SIZE, TYPE_PQXDH_INIT, TYPE_RATCHET, parsePayload } from './envelope.js';
import { ZERO_SALT, aesGcmKey, aesGcmOpen, aesGcmSeal, hkdf, hmacKey, x25519, x25519KeyPair } from './primitives.js';

export const MAX_SKIP = 1000;
export const MAX_SKIPPED_KEYS = 2000;
export const SKIPPED_KEY_LIFETIME_MS = 10 * 60 * 1000;

const TAG_SIZE = 16;
const MIN_MESSAGE = RATCHET_HEADER_SIZE + TAG_SIZE;
const RATCHET_INFO = utf8('Sotto ratchet v1');
const MESSAGE_KEYS_INFO = utf8('Sotto message keys v1');
const MAX_U32 = 0xffffffff;

/** KDF_RK: [new root key, chain key]. */
export async function kdfRK(rk, dhOut) {
  const okm = await hkdf(dhOut, rk, RATCHET_INFO, 64);
  return [okm.slice(0, 32), okm.slice(32, 64)];
}

/** KDF_CK: [message key, next chain key]. */
export async function kdfCK(ck) {
  const k = await hmacKey(ck);
  const [mk, next] = await Promise.all([crypto.subtle.sign('HMAC', k, Uint8Array.of(1)), crypto.subtle.sign('HMAC', k, Uint8Array.of(2))]);
  return [new Uint8Array(mk), new Uint8Array(next)];
}

async function messageAEAD(mk) {
  const okm = await hkdf(mk, ZERO_SALT, MESSAGE_KEYS_INFO, 44);
  const key = await aesGcmKey(okm.subarray(0, 32));
  const nonce = okm.slice(32, 44);
  wipe(okm);
  return { key, nonce };
}

export async function sealMessage(mk, plaintext, ad, header) {
  const { key, nonce } = await messageAEAD(mk);
  return aesGcmSeal(key, nonce, plaintext, concat(ad, header));
}

async function openMessage(mk, ciphertext, ad, header) {
  const { key, nonce } = await messageAEAD(mk);
  return aesGcmOpen(key, nonce, ciphertext, concat(ad, header));
}

function cloneState(st) {
  return { ...st, skipped: new Map(st.skipped) };
}

/** A Double Ratchet session with one peer device. */
export class Session {
  /** Use initiateSession / acceptSession of pqxdh.js. */
  constructor({ random = randomBytes, peer, ad, initiator, initPrefix, lastResortKem = false, state }) {
    this._random = random;
    /** The peer's PublicIdentity. */
    this.peer = peer;
    this.ad = ad;
    /** Whether this side started the session with PQXDH. */
    this.initiator = initiator;
    /** Whether PQXDH encapsulated to the responder's last-resort KEM
     *  prekey (the directory had no one-time one for the initiator). */
    this.lastResortKem = lastResortKem;
    this.initPrefix = initPrefix;
    this.answered = false;
    this._st = state;
    this._lock = Promise.resolve();
  }

  /** A new ratchet state: dhs {privateKey, publicKey}, dhr, rk, cks, ckr. */
  static newState({ dhs, dhr = null, rk, cks = null }) {
    return { dhs, dhr, rk, cks, ckr: null, ns: 0, nr: 0, pn: 0, skipped: new Map() };
  }

  _serial(fn) {
    const run = this._lock.then(fn, fn);
    this._lock = run.catch(() => {});
    return run;
  }

  /** Whether this side can encrypt (a responder cannot before its first
   *  decryption). */
  get canEncrypt() {
    return this._st.cks !== null;
  }

  /** Encrypts a plaintext for the peer; resolves to the envelope payload
   *  (pqxdh-init until the peer answered, then ratchet). */
  encrypt(plaintext) {
    return this._serial(async () => {
      const st = this._st;
      if (st.cks === null) throw new ProtocolError('invalid', 'encrypt: session has no sending chain yet');
      if (st.ns === MAX_U32) throw new ProtocolError('invalid', 'encrypt: sending chain exhausted');
      const [mk, cks] = await kdfCK(st.cks);
      st.cks = cks;
      const prefix = this.initiator && !this.answered ? concat(Uint8Array.of(PAYLOAD_VERSION, TYPE_PQXDH_INIT), this.initPrefix) : Uint8Array.of(PAYLOAD_VERSION, TYPE_RATCHET);
      const header = concat(st.dhs.publicKey, u32(st.pn), u32(st.ns));
      st.ns++;
      const ct = await sealMessage(mk, plaintext, this.ad, header);
      wipe(mk);
      return concat(prefix, header, ct);
    });
  }

  /** Authenticates and decrypts a payload from the peer at time now (ms).
   *  Throws a ProtocolError: other_session (a pqxdh-init that starts a
   *  different session: give it to acceptSession), invalid, decrypt,
   *  too_many_skipped. */
  decrypt(payload, now) {
    return this._serial(async () => {
      const { type, body } = parsePayload(payload);
      let msg = body;
      if (type === TYPE_PQXDH_INIT) {
        if (body.length < INIT_PREFIX_SIZE || this.initiator || !equal(body.subarray(0, INIT_PREFIX_SIZE), this.initPrefix)) {
          throw new ProtocolError('other_session', 'decrypt: message belongs to another session');
        }
        msg = body.subarray(INIT_PREFIX_SIZE);
      }
      const pt = await this._decryptMessage(msg, now);
      this.answered = true;
      return pt;
    });
  }

  /** RatchetDecrypt on a copy of the state, committed only on success.
   *  Used directly by acceptSession for the first message. */
  async _decryptMessage(msg, now) {
    if (msg.length < MIN_MESSAGE) throw new ProtocolError('invalid', 'ratchet message too short');
    const header = msg.subarray(0, RATCHET_HEADER_SIZE);
    const ct = msg.subarray(RATCHET_HEADER_SIZE);
    const st = cloneState(this._st);
    expireSkipped(st, now);
    const id = toHex(header.subarray(0, 32)) + ':' + readU32(header, 36);
    const sk = st.skipped.get(id);
    if (sk) {
      const pt = await openMessage(sk.mk, ct, this.ad, header);
      if (pt === null) throw new ProtocolError('decrypt', 'message does not decrypt');
      st.skipped.delete(id);
      this._commit(st);
      return pt;
    }
    const dh = header.subarray(0, 32);
    if (st.dhr === null || !equal(dh, st.dhr)) {
      await skip(st, readU32(header, 32), now);
      await this._dhRatchet(st, dh);
    }
    await skip(st, readU32(header, 36), now);
    const [mk, ckr] = await kdfCK(st.ckr);
    st.ckr = ckr;
    st.nr++;
    const pt = await openMessage(mk, ct, this.ad, header);
    wipe(mk);
    if (pt === null) {
      this._discard(st);
      throw new ProtocolError('decrypt', 'message does not decrypt');
    }
    this._commit(st);
    return pt;
  }

  async _dhRatchet(st, dh) {
    st.pn = st.ns;
    st.ns = 0;
    st.nr = 0;
    st.dhr = dh.slice();
    let out = await x25519(st.dhs.privateKey, st.dhr);
    [st.rk, st.ckr] = await kdfRK(st.rk, out);
    wipe(out);
    st.dhs = await x25519KeyPair(this._random(32));
    out = await x25519(st.dhs.privateKey, st.dhr);
    [st.rk, st.cks] = await kdfRK(st.rk, out);
    wipe(out);
  }

  _commit(st) {
    for (const [id, k] of this._st.skipped) if (st.skipped.get(id) !== k) wipe(k.mk);
    this._st = st;
  }

  _discard(st) {
    for (const [id, k] of st.skipped) if (this._st.skipped.get(id) !== k) wipe(k.mk);
  }

  /** Number of skipped message keys held (for tests and limits). */
  get skippedKeys() {
    return this._st.skipped.size;
  }
}

/** SkipMessageKeys: stores the receiving chain's keys up to until. */
async function skip(st, until, now) {
  if (st.nr + MAX_SKIP < until) throw new ProtocolError('too_many_skipped', 'too many skipped messages');
  if (st.ckr === null) return;
  while (st.nr < until) {
    const [mk, ckr] = await kdfCK(st.ckr);
    st.ckr = ckr;
    st.skipped.set(toHex(st.dhr) + ':' + st.nr, { mk, stored: now });
    st.nr++;
  }
  // Keys are inserted in the order they are derived and copies keep that
  // order, so the first entry is the oldest.
  while (st.skipped.size > MAX_SKIPPED_KEYS) st.skipped.delete(st.skipped.keys().next().value);
}

function expireSkipped(st, now) {
  for (const [id, k] of st.skipped) if (now - k.stored > SKIPPED_KEY_LIFETIME_MS) st.skipped.delete(id);
}
