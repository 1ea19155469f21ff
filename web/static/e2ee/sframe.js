// SFrame (RFC 9605) as docs/PROTOCOL.md §7 uses it: header encoding with
// 64-bit KID and CTR (BigInt), key and salt derivation, the SFrame ratchet
// (§5.1) and the five cipher suites. AES-GCM runs in WebCrypto; the
// AES-CTR + HMAC-SHA256 suites (0x0001-0x0003) are built from WebCrypto's
// AES-CTR and HMAC with a truncated tag.
//
// SFrameKey derives and imports its keys once; seal and open then cost one
// or two WebCrypto calls per frame.

import { concat, equal, readUint, u16, u64, utf8 } from './bytes.js';
import { ProtocolError } from './errors.js';
import { aesCtr, aesCtrKey, aesGcmKey, aesGcmOpen, aesGcmSeal, hkdf, hmacKey } from './primitives.js';

export const AES_128_CTR_HMAC_SHA256_80 = 0x0001;
export const AES_128_CTR_HMAC_SHA256_64 = 0x0002;
export const AES_128_CTR_HMAC_SHA256_32 = 0x0003;
export const AES_128_GCM_SHA256_128 = 0x0004;
export const AES_256_GCM_SHA512_128 = 0x0005;
export const DEFAULT_SUITE = AES_128_GCM_SHA256_128;

const NN = 12;
const MAX_U64 = (1n << 64n) - 1n;

const SUITES = new Map([
  [0x0001, { name: 'AES_128_CTR_HMAC_SHA256_80', hash: 'SHA-256', nh: 32, nk: 48, nn: NN, nt: 10, ctrHmac: true }],
  [0x0002, { name: 'AES_128_CTR_HMAC_SHA256_64', hash: 'SHA-256', nh: 32, nk: 48, nn: NN, nt: 8, ctrHmac: true }],
  [0x0003, { name: 'AES_128_CTR_HMAC_SHA256_32', hash: 'SHA-256', nh: 32, nk: 48, nn: NN, nt: 4, ctrHmac: true }],
  [0x0004, { name: 'AES_128_GCM_SHA256_128', hash: 'SHA-256', nh: 32, nk: 16, nn: NN, nt: 16, ctrHmac: false }],
  [0x0005, { name: 'AES_256_GCM_SHA512_128', hash: 'SHA-512', nh: 64, nk: 32, nn: NN, nt: 16, ctrHmac: false }],
]);

/** The parameters of a suite ({name, hash, nh, nk, nn, nt, ctrHmac}), or
 *  undefined for a suite outside RFC 9605's registry. */
export function suiteParams(suite) {
  return SUITES.get(suite);
}

function mustSuite(suite) {
  const p = SUITES.get(suite);
  if (!p) throw new ProtocolError('unknown_suite', `unknown SFrame cipher suite ${suite}`);
  return p;
}

function byteLen(v) {
  let n = 0;
  for (; v > 0n; v >>= 8n) n++;
  return n;
}

function uintBytes(v, n) {
  const out = new Uint8Array(n);
  for (let i = n - 1; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

/** The RFC 9605 §4.3 header of kid and ctr (BigInt or safe Number). */
export function encodeHeader(kid, ctr) {
  kid = BigInt(kid);
  ctr = BigInt(ctr);
  if (kid < 0n || kid > MAX_U64 || ctr < 0n || ctr > MAX_U64) throw new RangeError('sframe header: KID or CTR out of range');
  let config = 0;
  let kidBytes = new Uint8Array(0);
  let ctrBytes = new Uint8Array(0);
  if (kid < 8n) {
    config = Number(kid) << 4;
  } else {
    const n = byteLen(kid);
    config = 0x80 | ((n - 1) << 4);
    kidBytes = uintBytes(kid, n);
  }
  if (ctr < 8n) {
    config |= Number(ctr);
  } else {
    const n = byteLen(ctr);
    config |= 0x08 | (n - 1);
    ctrBytes = uintBytes(ctr, n);
  }
  return concat(Uint8Array.of(config), kidBytes, ctrBytes);
}

/** Decodes the header at the start of b: {kid, ctr (BigInt), length}, or
 *  null when it does not parse. */
export function decodeHeader(b) {
  if (!b || b.length === 0) return null;
  const config = b[0];
  let n = 1;
  let kid;
  let ctr;
  if ((config & 0x80) === 0) {
    kid = BigInt((config >> 4) & 0x07);
  } else {
    const l = ((config >> 4) & 0x07) + 1;
    if (b.length < n + l) return null;
    kid = readUint(b.subarray(n, n + l));
    n += l;
  }
  if ((config & 0x08) === 0) {
    ctr = BigInt(config & 0x07);
  } else {
    const l = (config & 0x07) + 1;
    if (b.length < n + l) return null;
    ctr = readUint(b.subarray(n, n + l));
    n += l;
  }
  return { kid, ctr, length: n };
}

function label(prefix, kid, suite) {
  return concat(utf8(prefix), u64(kid), u16(suite));
}

const EMPTY = new Uint8Array(0);

/** derive_key_salt of RFC 9605 §4.4.2: {key (Nk bytes), salt (Nn bytes)}. */
export async function deriveKeySalt(suite, kid, baseKey) {
  const p = mustSuite(suite);
  const [key, salt] = await Promise.all([
    hkdf(baseKey, EMPTY, label('SFrame 1.0 Secret key ', kid, suite), p.nk, p.hash),
    hkdf(baseKey, EMPTY, label('SFrame 1.0 Secret salt ', kid, suite), p.nn, p.hash),
  ]);
  return { key, salt };
}

/** The SFrame ratchet of RFC 9605 §5.1: the next base key. */
export function ratchetBaseKey(suite, baseKey) {
  const p = mustSuite(suite);
  return hkdf(baseKey, EMPTY, utf8('SFrame 1.0 Ratchet'), p.nh, p.hash);
}

function nonceFor(salt, ctr) {
  const nonce = salt.slice();
  const c = u64(ctr);
  for (let i = 0; i < 8; i++) nonce[NN - 8 + i] ^= c[i];
  return nonce;
}

/** The AES-CTR-HMAC AEAD of RFC 9605 §4.5.1 with imported keys. */
class CtrHmac {
  constructor(nt, encKey, authKey) {
    this.nt = nt;
    this.encKey = encKey;
    this.authKey = authKey;
  }

  static async create(suite, key) {
    const p = mustSuite(suite);
    if (!p.ctrHmac || key.length !== p.nk) throw new ProtocolError('invalid', 'ctr-hmac: wrong suite or key size');
    const [encKey, authKey] = await Promise.all([aesCtrKey(key.subarray(0, 16)), hmacKey(key.subarray(16))]);
    return new CtrHmac(p.nt, encKey, authKey);
  }

  async tag(nonce, aad, ct) {
    const lens = concat(u64(aad.length), u64(ct.length), u64(this.nt));
    const mac = await crypto.subtle.sign('HMAC', this.authKey, concat(lens, nonce, aad, ct));
    return new Uint8Array(mac, 0, this.nt);
  }

  async seal(nonce, aad, pt) {
    const ct = await aesCtr(this.encKey, concat(nonce, new Uint8Array(4)), pt);
    return concat(ct, await this.tag(nonce, aad, ct));
  }

  /** Resolves to the plaintext, or null when the tag does not verify. */
  async open(nonce, aad, ctAndTag) {
    if (ctAndTag.length < this.nt) return null;
    const ct = ctAndTag.subarray(0, ctAndTag.length - this.nt);
    if (!equal(await this.tag(nonce, aad, ct), ctAndTag.subarray(ct.length))) return null;
    return aesCtr(this.encKey, concat(nonce, new Uint8Array(4)), ct);
  }
}

/** AES-CTR-HMAC seal with a raw Nk-byte key: ciphertext || tag (for the
 *  RFC 9605 Appendix C.3 vectors). */
export async function ctrHmacSeal(suite, key, nonce, aad, pt) {
  return (await CtrHmac.create(suite, key)).seal(nonce, aad, pt);
}

export async function ctrHmacOpen(suite, key, nonce, aad, ct) {
  return (await CtrHmac.create(suite, key)).open(nonce, aad, ct);
}

/** The SFrame key material of one (base key, KID): imported AEAD key(s)
 *  and the salt, derived once. */
export class SFrameKey {
  constructor(suite, kid, params, aead, salt) {
    this.suite = suite;
    this.kid = kid;
    this.params = params;
    this._aead = aead;
    this._salt = salt;
  }

  static async create(suite, kid, baseKey) {
    const p = mustSuite(suite);
    kid = BigInt(kid);
    const { key, salt } = await deriveKeySalt(suite, kid, baseKey);
    const aead = p.ctrHmac ? await CtrHmac.create(suite, key) : await aesGcmKey(key);
    key.fill(0);
    return new SFrameKey(suite, kid, p, aead, salt);
  }

  /** The tag length Nt. */
  get overhead() {
    return this.params.nt;
  }

  /** header || AEAD(plaintext) with aad = header || metadata. */
  async seal(ctr, plaintext, metadata = EMPTY) {
    const header = encodeHeader(this.kid, ctr);
    const nonce = nonceFor(this._salt, ctr);
    const aad = metadata.length ? concat(header, metadata) : header;
    const ct = this.params.ctrHmac ? await this._aead.seal(nonce, aad, plaintext) : await aesGcmSeal(this._aead, nonce, plaintext, aad);
    return concat(header, ct);
  }

  /** Opens a frame whose header decodeHeader returned as hdr (its KID must
   *  be this key's); resolves to the plaintext or null when it does not
   *  authenticate. */
  async open(frame, hdr, metadata = EMPTY) {
    if (frame.length - hdr.length < this.params.nt) return null;
    const header = frame.subarray(0, hdr.length);
    const nonce = nonceFor(this._salt, hdr.ctr);
    const aad = metadata.length ? concat(header, metadata) : header;
    const ct = frame.subarray(hdr.length);
    return this.params.ctrHmac ? this._aead.open(nonce, aad, ct) : aesGcmOpen(this._aead, nonce, ct, aad);
  }

  /** Forgets the key material (CryptoKeys cannot be zeroed; dropping the
   *  references lets them be collected). */
  destroy() {
    this._salt.fill(0);
    this._aead = null;
  }
}
