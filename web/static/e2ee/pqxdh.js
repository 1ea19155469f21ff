// PQXDH (docs/PROTOCOL.md §2, §4): prekey bundles, the device's prekey
// store, and the initiator's and responder's halves of the key agreement
// (X25519 and ML-KEM-768), which start a Double Ratchet Session. A bundle
// without a valid signed KEM prekey is refused: no session is ever set up
// without post-quantum protection.

import { concat, fromBase64, randomBytes, toBase64, toHex, u32, utf8, wipe } from './bytes.js';
import { ProtocolError } from './errors.js';
import { INIT_PREFIX_SIZE, TYPE_PQXDH_INIT, encodeInitPrefix, parseInitPrefix, parsePayload } from './envelope.js';
import { PublicIdentity, SIGNED_PREKEY_LABEL } from './identity.js';
import { KEM_PUBLIC_KEY_SIZE, KEM_SEED_SIZE, defaultKem } from './mlkem.js';
import { ZERO_SALT, hkdf, x25519, x25519KeyPair } from './primitives.js';
import { Session, kdfRK } from './ratchet.js';

/** The KDF's info: application, curve, hash and KEM (§4.1). */
export const PQXDH_INFO = 'Sotto_PQXDH_CURVE25519_SHA-256_ML-KEM-768';
/** The label of a KEM prekey's signature (§2). */
export const KEM_PREKEY_LABEL = 'Sotto ML-KEM-768 prekey v1';

const MIN_RATCHET_MESSAGE = 40 + 16;

function kemPrekeyFromJSON(k) {
  return k ? { id: k.id >>> 0, key: fromBase64(k.key), signature: fromBase64(k.signature) } : null;
}

function kemPrekeyToJSON(k) {
  return { id: k.id, key: toBase64(k.key), signature: toBase64(k.signature) };
}

/** A bundle: {identityKey: Uint8Array(128), signedPrekey: {id, key,
 *  signature}, oneTimePrekey: {id, key} | null, kemPrekey: {id, key,
 *  signature} | null, oneTimeKemPrekey: {id, key, signature} | null}. From
 *  api.PrekeyBundle JSON (base64 fields). */
export function bundleFromJSON(j) {
  if (!j || typeof j !== 'object' || !j.signed_prekey) throw new ProtocolError('invalid', 'prekey bundle: malformed JSON');
  return {
    identityKey: fromBase64(j.identity_key),
    signedPrekey: { id: j.signed_prekey.id >>> 0, key: fromBase64(j.signed_prekey.key), signature: fromBase64(j.signed_prekey.signature) },
    oneTimePrekey: j.one_time_prekey ? { id: j.one_time_prekey.id >>> 0, key: fromBase64(j.one_time_prekey.key) } : null,
    kemPrekey: kemPrekeyFromJSON(j.kem_prekey),
    oneTimeKemPrekey: kemPrekeyFromJSON(j.one_time_kem_prekey),
  };
}

/** Checks a KEM prekey's size and signature by peer; throws a
 *  ProtocolError: no_kem_prekey (missing or malformed) or bad_signature. */
async function verifyKemPrekey(peer, k, what) {
  if (!k || !(k.key instanceof Uint8Array) || k.key.length === 0) {
    throw new ProtocolError('no_kem_prekey', `${what}: missing; refusing a session without post-quantum protection`);
  }
  if (k.key.length !== KEM_PUBLIC_KEY_SIZE || !(k.signature instanceof Uint8Array) || k.signature.length !== 64) {
    throw new ProtocolError('no_kem_prekey', `${what}: wrong sizes; refusing a session without post-quantum protection`);
  }
  if (!(await peer.verify(KEM_PREKEY_LABEL, k.signature, u32(k.id), k.key))) throw new ProtocolError('bad_signature', `${what}: bad signature`);
}

/** Verifies a bundle's identity, signed prekey and KEM prekey signatures
 *  (§2) and resolves to {peer: PublicIdentity, kem: {id, key, lastResort}}:
 *  the one-time KEM prekey when offered, else the last-resort one. The
 *  last-resort KEM prekey must be there and valid in every bundle. Throws a
 *  ProtocolError otherwise. */
export async function verifyBundle(b) {
  const peer = await PublicIdentity.parse(b.identityKey);
  const spk = b.signedPrekey;
  if (!spk || spk.key.length !== 32 || spk.signature.length !== 64) throw new ProtocolError('invalid', 'signed prekey: wrong sizes');
  if (!(await peer.verify(SIGNED_PREKEY_LABEL, spk.signature, u32(spk.id), spk.key))) throw new ProtocolError('bad_signature', 'signed prekey: bad signature');
  if (b.oneTimePrekey && b.oneTimePrekey.key.length !== 32) throw new ProtocolError('invalid', 'one-time prekey: wrong size');
  await verifyKemPrekey(peer, b.kemPrekey, 'last-resort KEM prekey');
  if (b.oneTimeKemPrekey) {
    await verifyKemPrekey(peer, b.oneTimeKemPrekey, 'one-time KEM prekey');
    return { peer, kem: { id: b.oneTimeKemPrekey.id, key: b.oneTimeKemPrekey.key, lastResort: false } };
  }
  return { peer, kem: { id: b.kemPrekey.id, key: b.kemPrekey.key, lastResort: true } };
}

/** SK = HKDF(0xFF*32 || DH1 || DH2 || DH3 [|| DH4] || SS, zero salt,
 *  PQXDH_INFO, 32). Wipes its inputs. */
export async function pqxdhSecret(dhOutputs, ss) {
  const ikm = concat(new Uint8Array(32).fill(0xff), ...dhOutputs, ss);
  try {
    return await hkdf(ikm, ZERO_SALT, utf8(PQXDH_INFO), 32);
  } finally {
    wipe(ikm, ...dhOutputs, ss);
  }
}

/** The initiator's half (§4.1, §5.2 Alice): verifies the bundle, draws the
 *  ephemeral key then the first ratchet key from random, encapsulates to
 *  the one-time KEM prekey if offered, else to the last-resort one, and
 *  resolves to a Session whose messages are pqxdh-init until the peer
 *  answers. kem is the ML-KEM backend (mlkem.js; the page's by default).
 *  Compare session.peer with what you knew of the peer. */
export async function initiateSession(local, bundle, random = randomBytes, kem = undefined) {
  kem ??= await defaultKem();
  const { peer, kem: kemPrekey } = await verifyBundle(bundle);
  const ek = await x25519KeyPair(random(32));
  const { ciphertext, sharedSecret } = await kem.encapsulate(kemPrekey.key).catch((e) => {
    throw e.code === 'invalid' ? new ProtocolError('no_kem_prekey', `KEM prekey ${kemPrekey.id}: ${e.message}; refusing a session without post-quantum protection`) : e;
  });
  const spk = bundle.signedPrekey.key;
  const dhs = [await x25519(local.dhPrivateKey, spk), await x25519(ek.privateKey, peer.dhPub), await x25519(ek.privateKey, spk)];
  if (bundle.oneTimePrekey) dhs.push(await x25519(ek.privateKey, bundle.oneTimePrekey.key));
  const sk = await pqxdhSecret(dhs, sharedSecret);
  wipe(ek.privateBytes);
  const initPrefix = encodeInitPrefix(local.public.bytes, ek.publicKey, bundle.signedPrekey.id, bundle.oneTimePrekey ? bundle.oneTimePrekey.id : null, kemPrekey.id, ciphertext);
  const ratchetKey = await x25519KeyPair(random(32));
  const out = await x25519(ratchetKey.privateKey, spk);
  const [rk, cks] = await kdfRK(sk, out);
  wipe(sk, out);
  return new Session({
    random,
    peer,
    ad: concat(local.public.bytes, peer.bytes),
    initiator: true,
    initPrefix,
    lastResortKem: kemPrekey.lastResort,
    state: Session.newState({ dhs: ratchetKey, dhr: spk.slice(), rk, cks }),
  });
}

/** The responder's half: the device's identity and the private parts of
 *  the prekeys it published. Keeps the previous signed and last-resort KEM
 *  prekeys answering after a rotation; deletes each one-time prekey after
 *  its first use; zeroes KEM seeds as they are retired. */
export class PrekeyStore {
  constructor(identity, random = randomBytes, kem = null) {
    this.identity = identity;
    this._random = random;
    this._kem = kem;
    this._nextId = 0;
    this._signed = null; // {id, key, signature, pair}
    this._previous = null;
    this._oneTime = new Map(); // id -> pair
    this._kemPrekey = null; // {id, key, signature, seed, pair}
    this._previousKem = null;
    this._oneTimeKem = new Map(); // id -> {id, key, signature, seed, pair}
    // Per signed prekey still held, the EK_A of every session it started:
    // a replayed pqxdh-init must not start a second one (§4.2).
    this._accepted = new Map(); // spk id -> Set of hex EK_A
  }

  /** A store with a first signed prekey and a first last-resort KEM
   *  prekey. Ids start at a random u32. kem is the ML-KEM backend
   *  (mlkem.js; the page's by default). */
  static async create(identity, random = randomBytes, kem = undefined) {
    const s = new PrekeyStore(identity, random, kem ?? (await defaultKem()));
    const b = random(4);
    s._nextId = new DataView(b.buffer, b.byteOffset, 4).getUint32(0);
    await s.rotateSignedPrekey();
    await s.rotateKemPrekey();
    return s;
  }

  _newId() {
    this._nextId = (this._nextId + 1) >>> 0;
    return this._nextId;
  }

  /** Replaces the signed prekey; resolves to its public part. */
  async rotateSignedPrekey() {
    const pair = await x25519KeyPair(this._random(32));
    const id = this._newId();
    const signature = await this.identity.signPrekey(id, pair.publicKey);
    if (this._previous) this._accepted.delete(this._previous.id);
    this._previous = this._signed;
    this._signed = { id, key: pair.publicKey, signature, pair };
    return this.signedPrekey;
  }

  get signedPrekey() {
    const s = this._signed;
    return { id: s.id, key: s.key.slice(), signature: s.signature.slice() };
  }

  /** Generates n one-time prekeys; resolves to their public parts. */
  async newOneTimePrekeys(n) {
    const out = [];
    for (let i = 0; i < n; i++) {
      const pair = await x25519KeyPair(this._random(32));
      const id = this._newId();
      this._oneTime.set(id, pair);
      out.push({ id, key: pair.publicKey });
    }
    return out;
  }

  /** A signed KEM prekey from a 64-byte seed (drawn when not given). */
  async _newKemPrekey(seed = this._random(KEM_SEED_SIZE), id = this._newId(), signature = undefined) {
    const pair = await this._kem.keyPair(seed);
    signature ??= await this.identity.sign(KEM_PREKEY_LABEL, u32(id), pair.publicKey);
    return { id: id >>> 0, key: pair.publicKey, signature, seed, pair };
  }

  /** Replaces the last-resort KEM prekey; resolves to its public part. The
   *  previous one keeps answering until the next rotation, when it is
   *  zeroed. */
  async rotateKemPrekey() {
    this._setKemPrekey(await this._newKemPrekey());
    return this.kemPrekey;
  }

  _setKemPrekey(k) {
    if (this._previousKem) retireKem(this._previousKem);
    this._previousKem = this._kemPrekey;
    this._kemPrekey = k;
  }

  /** The last-resort KEM prekey's public part. */
  get kemPrekey() {
    const k = this._kemPrekey;
    return { id: k.id, key: k.key.slice(), signature: k.signature.slice() };
  }

  /** Generates n signed one-time KEM prekeys; resolves to their public
   *  parts. */
  async newOneTimeKemPrekeys(n) {
    const out = [];
    for (let i = 0; i < n; i++) {
      const k = await this._newKemPrekey();
      this._oneTimeKem.set(k.id, k);
      out.push({ id: k.id, key: k.key, signature: k.signature });
    }
    return out;
  }

  /** Installs a one-time prekey from its private part (test vectors). */
  async addOneTimePrekey(id, priv) {
    this._oneTime.set(id >>> 0, await x25519KeyPair(priv));
  }

  /** Installs a signed prekey from its private part (test vectors). */
  async setSignedPrekey(id, priv, signature) {
    const pair = await x25519KeyPair(priv);
    if (this._previous) this._accepted.delete(this._previous.id);
    this._previous = this._signed;
    this._signed = { id: id >>> 0, key: pair.publicKey, signature, pair };
  }

  /** Installs a last-resort KEM prekey from its seed (test vectors). */
  async setKemPrekey(id, seed, signature) {
    this._setKemPrekey(await this._newKemPrekey(seed.slice(), id, signature));
  }

  /** Installs a one-time KEM prekey from its seed (test vectors). */
  async addOneTimeKemPrekey(id, seed, signature) {
    const k = await this._newKemPrekey(seed.slice(), id, signature);
    this._oneTimeKem.set(k.id, k);
  }

  get oneTimePrekeyCount() {
    return this._oneTime.size;
  }

  get oneTimeKemPrekeyCount() {
    return this._oneTimeKem.size;
  }

  _signedPair(id) {
    if (this._signed && this._signed.id === id) return this._signed.pair;
    if (this._previous && this._previous.id === id) return this._previous.pair;
    return null;
  }

  /** The KEM prekey id: {k, oneTime}, or null. */
  _kemPrekeyOf(id) {
    const k = this._oneTimeKem.get(id);
    if (k) return { k, oneTime: true };
    for (const lr of [this._kemPrekey, this._previousKem]) if (lr && lr.id === id) return { k: lr, oneTime: false };
    return null;
  }

  /** Forgets the private prekeys (the bytes are zeroed; CryptoKeys are
   *  dropped). */
  close() {
    for (const pair of this._oneTime.values()) wipe(pair.privateBytes);
    this._oneTime.clear();
    for (const s of [this._signed, this._previous]) if (s) wipe(s.pair.privateBytes);
    this._signed = null;
    this._previous = null;
    for (const k of this._oneTimeKem.values()) retireKem(k);
    this._oneTimeKem.clear();
    for (const k of [this._kemPrekey, this._previousKem]) if (k) retireKem(k);
    this._kemPrekey = null;
    this._previousKem = null;
    this._accepted.clear();
  }

  /** api.PrekeyUpload JSON with n new one-time prekeys of each kind. */
  async uploadJSON(n) {
    const opks = await this.newOneTimePrekeys(n);
    const kems = await this.newOneTimeKemPrekeys(n);
    const spk = this._signed;
    return {
      identity_key: toBase64(this.identity.public.bytes),
      signed_prekey: { id: spk.id, key: toBase64(spk.key), signature: toBase64(spk.signature) },
      one_time_prekeys: opks.map((k) => ({ id: k.id, key: toBase64(k.key) })),
      kem_prekey: kemPrekeyToJSON(this._kemPrekey),
      one_time_kem_prekeys: kems.map(kemPrekeyToJSON),
    };
  }
}

function retireKem(k) {
  wipe(k.seed);
  k.pair.wipe();
}

/** The responder's half on a pqxdh-init payload (§4.1, §5.2 Bob): resolves
 *  to {session, plaintext} of the first message it carries. The one-time
 *  prekeys used are deleted on success (the KEM one zeroed); a replayed
 *  initial message is refused (replayed_init). Compare session.peer with
 *  what you knew of the peer. */
export async function acceptSession(store, payload, now) {
  const { type, body } = parsePayload(payload);
  if (type !== TYPE_PQXDH_INIT || body.length < INIT_PREFIX_SIZE + MIN_RATCHET_MESSAGE) throw new ProtocolError('invalid', 'accept session: not a pqxdh-init');
  const init = parseInitPrefix(body);
  const spk = store._signedPair(init.spkId);
  if (!spk) throw new ProtocolError('unknown_prekey', `accept session: signed prekey ${init.spkId} unknown`);
  const ekHex = toHex(init.ephemeral);
  let accepted = store._accepted.get(init.spkId);
  if (accepted && accepted.has(ekHex)) throw new ProtocolError('replayed_init', 'accept session: pqxdh-init already accepted');
  if (!accepted) store._accepted.set(init.spkId, (accepted = new Set()));
  // Taken before the first await, so that the same message accepted twice
  // at once starts one session; given back if this one fails.
  accepted.add(ekHex);
  try {
    const peer = await PublicIdentity.parse(init.identity);
    const dhs = [await x25519(spk.privateKey, peer.dhPub), await x25519(store.identity.dhPrivateKey, init.ephemeral), await x25519(spk.privateKey, init.ephemeral)];
    if (init.opkId !== null) {
      const opk = store._oneTime.get(init.opkId);
      if (!opk) throw new ProtocolError('unknown_prekey', `accept session: one-time prekey ${init.opkId} unknown`);
      dhs.push(await x25519(opk.privateKey, init.ephemeral));
    }
    const kem = store._kemPrekeyOf(init.kemId);
    if (!kem) throw new ProtocolError('unknown_prekey', `accept session: KEM prekey ${init.kemId} unknown`);
    const sk = await pqxdhSecret(dhs, await kem.k.pair.decapsulate(init.kemCiphertext));
    const session = new Session({
      random: store._random,
      peer,
      ad: concat(peer.bytes, store.identity.public.bytes),
      initiator: false,
      initPrefix: init.prefix.slice(),
      lastResortKem: !kem.oneTime,
      state: Session.newState({ dhs: spk, rk: sk }),
    });
    const plaintext = await session._decryptMessage(init.message, now);
    if (init.opkId !== null) {
      const opk = store._oneTime.get(init.opkId);
      store._oneTime.delete(init.opkId);
      if (opk) wipe(opk.privateBytes);
    }
    if (kem.oneTime && store._oneTimeKem.delete(init.kemId)) retireKem(kem.k);
    return { session, plaintext };
  } catch (e) {
    accepted.delete(ekHex);
    throw e;
  }
}
