// X3DH (docs/PROTOCOL.md §2, §4): prekey bundles, the device's prekey
// store, and the initiator's and responder's halves of the key agreement,
// which start a Double Ratchet Session.

import { concat, fromBase64, randomBytes, toBase64, toHex, u32, utf8, wipe } from './bytes.js';
import { ProtocolError } from './errors.js';
import { INIT_PREFIX_SIZE, TYPE_X3DH_INIT, encodeInitPrefix, parseInitPrefix, parsePayload } from './envelope.js';
import { PublicIdentity, SIGNED_PREKEY_LABEL } from './identity.js';
import { ZERO_SALT, hkdf, x25519, x25519KeyPair } from './primitives.js';
import { Session, kdfRK } from './ratchet.js';

const X3DH_INFO = utf8('Sotto X3DH v1');

/** A bundle: {identityKey: Uint8Array(128), signedPrekey: {id, key,
 *  signature}, oneTimePrekey: {id, key} | null}. From api.PrekeyBundle JSON
 *  (base64 fields). */
export function bundleFromJSON(j) {
  if (!j || typeof j !== 'object' || !j.signed_prekey) throw new ProtocolError('invalid', 'prekey bundle: malformed JSON');
  return {
    identityKey: fromBase64(j.identity_key),
    signedPrekey: { id: j.signed_prekey.id >>> 0, key: fromBase64(j.signed_prekey.key), signature: fromBase64(j.signed_prekey.signature) },
    oneTimePrekey: j.one_time_prekey ? { id: j.one_time_prekey.id >>> 0, key: fromBase64(j.one_time_prekey.key) } : null,
  };
}

/** Verifies a bundle's identity and signed prekey signatures (§2) and
 *  resolves to {peer: PublicIdentity}. Throws a ProtocolError otherwise. */
export async function verifyBundle(b) {
  const peer = await PublicIdentity.parse(b.identityKey);
  const spk = b.signedPrekey;
  if (!spk || spk.key.length !== 32 || spk.signature.length !== 64) throw new ProtocolError('invalid', 'signed prekey: wrong sizes');
  if (!(await peer.verify(SIGNED_PREKEY_LABEL, spk.signature, u32(spk.id), spk.key))) throw new ProtocolError('bad_signature', 'signed prekey: bad signature');
  if (b.oneTimePrekey && b.oneTimePrekey.key.length !== 32) throw new ProtocolError('invalid', 'one-time prekey: wrong size');
  return { peer };
}

/** SK = HKDF(0xFF*32 || DH1 || DH2 || DH3 [|| DH4], zero salt, "Sotto X3DH v1", 32). */
export async function x3dhSecret(dhOutputs) {
  const ikm = concat(new Uint8Array(32).fill(0xff), ...dhOutputs);
  try {
    return await hkdf(ikm, ZERO_SALT, X3DH_INFO, 32);
  } finally {
    wipe(ikm, ...dhOutputs);
  }
}

/** The initiator's half (§4.1, §5.2 Alice): verifies the bundle, draws the
 *  ephemeral key then the first ratchet key from random, and resolves to a
 *  Session whose messages are x3dh-init until the peer answers. Compare
 *  session.peer with what you knew of the peer. */
export async function initiateSession(local, bundle, random = randomBytes) {
  const { peer } = await verifyBundle(bundle);
  const ek = await x25519KeyPair(random(32));
  const spk = bundle.signedPrekey.key;
  const dhs = [await x25519(local.dhPrivateKey, spk), await x25519(ek.privateKey, peer.dhPub), await x25519(ek.privateKey, spk)];
  if (bundle.oneTimePrekey) dhs.push(await x25519(ek.privateKey, bundle.oneTimePrekey.key));
  const sk = await x3dhSecret(dhs);
  wipe(ek.privateBytes);
  const initPrefix = encodeInitPrefix(local.public.bytes, ek.publicKey, bundle.signedPrekey.id, bundle.oneTimePrekey ? bundle.oneTimePrekey.id : null);
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
    state: Session.newState({ dhs: ratchetKey, dhr: spk.slice(), rk, cks }),
  });
}

/** The responder's half: the device's identity and the private parts of
 *  the prekeys it published. Keeps the previous signed prekey answering
 *  after a rotation; deletes each one-time prekey after its first use. */
export class PrekeyStore {
  constructor(identity, random = randomBytes) {
    this.identity = identity;
    this._random = random;
    this._nextId = 0;
    this._signed = null; // {id, key, signature, pair}
    this._previous = null;
    this._oneTime = new Map(); // id -> pair
    // Per signed prekey still held, the EK_A of every session it started:
    // a replayed x3dh-init must not start a second one (§4.2).
    this._accepted = new Map(); // spk id -> Set of hex EK_A
  }

  /** A store with a first signed prekey. Ids start at a random u32. */
  static async create(identity, random = randomBytes) {
    const s = new PrekeyStore(identity, random);
    const b = random(4);
    s._nextId = new DataView(b.buffer, b.byteOffset, 4).getUint32(0);
    await s.rotateSignedPrekey();
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

  get oneTimePrekeyCount() {
    return this._oneTime.size;
  }

  _signedPair(id) {
    if (this._signed && this._signed.id === id) return this._signed.pair;
    if (this._previous && this._previous.id === id) return this._previous.pair;
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
    this._accepted.clear();
  }

  /** api.PrekeyUpload JSON with n new one-time prekeys. */
  async uploadJSON(n) {
    const opks = await this.newOneTimePrekeys(n);
    const spk = this._signed;
    return {
      identity_key: toBase64(this.identity.public.bytes),
      signed_prekey: { id: spk.id, key: toBase64(spk.key), signature: toBase64(spk.signature) },
      one_time_prekeys: opks.map((k) => ({ id: k.id, key: toBase64(k.key) })),
    };
  }
}

/** The responder's half on an x3dh-init payload (§4.1, §5.2 Bob): resolves
 *  to {session, plaintext} of the first message it carries. The one-time
 *  prekey used is deleted on success. Compare session.peer with what you
 *  knew of the peer. */
export async function acceptSession(store, payload, now) {
  const { type, body } = parsePayload(payload);
  if (type !== TYPE_X3DH_INIT || body.length < INIT_PREFIX_SIZE + 56) throw new ProtocolError('invalid', 'accept session: not an x3dh-init');
  const init = parseInitPrefix(body);
  const peer = await PublicIdentity.parse(init.identity);
  const spk = store._signedPair(init.spkId);
  if (!spk) throw new ProtocolError('unknown_prekey', `accept session: signed prekey ${init.spkId} unknown`);
  const ekHex = toHex(init.ephemeral);
  const accepted = store._accepted.get(init.spkId);
  if (accepted && accepted.has(ekHex)) throw new ProtocolError('replayed_init', 'accept session: x3dh-init already accepted');
  const dhs = [await x25519(spk.privateKey, peer.dhPub), await x25519(store.identity.dhPrivateKey, init.ephemeral), await x25519(spk.privateKey, init.ephemeral)];
  if (init.opkId !== null) {
    const opk = store._oneTime.get(init.opkId);
    if (!opk) throw new ProtocolError('unknown_prekey', `accept session: one-time prekey ${init.opkId} unknown`);
    dhs.push(await x25519(opk.privateKey, init.ephemeral));
  }
  const sk = await x3dhSecret(dhs);
  const session = new Session({
    random: store._random,
    peer,
    ad: concat(peer.bytes, store.identity.public.bytes),
    initiator: false,
    initPrefix: init.prefix.slice(),
    state: Session.newState({ dhs: spk, rk: sk }),
  });
  const plaintext = await session._decryptMessage(init.message, now);
  if (init.opkId !== null) {
    const opk = store._oneTime.get(init.opkId);
    store._oneTime.delete(init.opkId);
    if (opk) wipe(opk.privateBytes);
  }
  if (!store._accepted.has(init.spkId)) store._accepted.set(init.spkId, new Set());
  store._accepted.get(init.spkId).add(ekHex);
  return { session, plaintext };
}
