// Device identities (docs/PROTOCOL.md §1): an Ed25519 signing pair and an
// X25519 pair certified by it; fingerprints and safety numbers.

import { compare, concat, equal, randomBytes, toHex, u32, utf8, wipe } from './bytes.js';
import { ProtocolError } from './errors.js';
import { ed25519KeyPair, ed25519Sign, ed25519Verify, sha256, sha512, x25519KeyPair } from './primitives.js';

export const PUBLIC_IDENTITY_SIZE = 128;
export const PRIVATE_IDENTITY_SIZE = 65;

const IDENTITY_SIG_LABEL = 'Sotto identity key v1';
const FINGERPRINT_LABEL = 'Sotto fingerprint v1';
export const SIGNED_PREKEY_LABEL = 'Sotto signed prekey v1';
const SAFETY_ITERATIONS = 5200;

/** The 128-byte public form of an identity: sig_pub || dh_pub ||
 *  identity_sig. Instances come from PublicIdentity.parse (signature
 *  verified) or PrivateIdentity.public. */
export class PublicIdentity {
  constructor(bytes, fingerprint) {
    this.bytes = bytes;
    this.sigPub = bytes.subarray(0, 32);
    this.dhPub = bytes.subarray(32, 64);
    /** K of the protocol: sig_pub || dh_pub. */
    this.key = bytes.subarray(0, 64);
    /** 64 lowercase hex digits (§1.1). */
    this.fingerprint = fingerprint;
  }

  /** Decodes 128 bytes and verifies identity_sig; throws otherwise. */
  static async parse(bytes) {
    if (!(bytes instanceof Uint8Array) || bytes.length !== PUBLIC_IDENTITY_SIZE) {
      throw new ProtocolError('invalid', `public identity: ${bytes && bytes.length} bytes, want ${PUBLIC_IDENTITY_SIZE}`);
    }
    const b = bytes.slice();
    if (!(await ed25519Verify(b.subarray(0, 32), b.subarray(64), concat(utf8(IDENTITY_SIG_LABEL), b.subarray(32, 64))))) {
      throw new ProtocolError('bad_signature', 'public identity: bad signature');
    }
    return new PublicIdentity(b, await fingerprintOf(b.subarray(0, 64)));
  }

  /** Same identity (same K), compared in constant time. */
  equals(other) {
    return other instanceof PublicIdentity && equal(this.key, other.key);
  }

  /** Byte-wise order of the encodings (-1, 0, +1), for §4.2's tie-break. */
  compare(other) {
    return compare(this.bytes, other.bytes);
  }

  /** Verifies an Ed25519 signature of label || parts by this identity. */
  verify(label, sig, ...parts) {
    return ed25519Verify(this.sigPub, sig, concat(utf8(label), ...parts));
  }
}

/** A device's private identity. Create with generate() or fromBytes(). */
export class PrivateIdentity {
  constructor(seed, dhPriv, sigKey, dhPair, pub) {
    this._seed = seed;
    this._dhPriv = dhPriv;
    this._sigKey = sigKey;
    /** X25519 private CryptoKey, for PQXDH. */
    this.dhPrivateKey = dhPair.privateKey;
    /** The PublicIdentity. */
    this.public = pub;
  }

  /** A new identity from 64 random bytes (seed, then X25519 scalar). */
  static async generate(random = randomBytes) {
    const b = random(64);
    try {
      return await PrivateIdentity._fromSecrets(b.slice(0, 32), b.slice(32, 64));
    } finally {
      wipe(b);
    }
  }

  /** Restores the 65-byte form 0x01 || sig_seed || dh_priv. */
  static async fromBytes(bytes) {
    if (!(bytes instanceof Uint8Array) || bytes.length !== PRIVATE_IDENTITY_SIZE || bytes[0] !== 0x01) {
      throw new ProtocolError('invalid', 'private identity: invalid encoding');
    }
    return PrivateIdentity._fromSecrets(bytes.slice(1, 33), bytes.slice(33, 65));
  }

  static async _fromSecrets(seed, dhPriv) {
    const sig = await ed25519KeyPair(seed);
    const dh = await x25519KeyPair(dhPriv);
    const isig = await ed25519Sign(sig.privateKey, concat(utf8(IDENTITY_SIG_LABEL), dh.publicKey));
    const pubBytes = concat(sig.publicKey, dh.publicKey, isig);
    const pub = new PublicIdentity(pubBytes, await fingerprintOf(pubBytes.subarray(0, 64)));
    return new PrivateIdentity(seed, dhPriv, sig.privateKey, dh, pub);
  }

  /** The 65-byte private form. Secret: store it as such. */
  toBytes() {
    return concat(Uint8Array.of(0x01), this._seed, this._dhPriv);
  }

  /** Ed25519 signature of label || parts. */
  sign(label, ...parts) {
    return ed25519Sign(this._sigKey, concat(utf8(label), ...parts));
  }

  /** spk_sig of §2. */
  signPrekey(id, pub) {
    return this.sign(SIGNED_PREKEY_LABEL, u32(id), pub);
  }
}

async function fingerprintOf(key) {
  return toHex(await sha256(concat(utf8(FINGERPRINT_LABEL), key)));
}

/** The fingerprint in 16 groups of 4 hex digits, for display. */
export function formatFingerprint(fp) {
  return fp.match(/.{1,4}/g).join(' ');
}

/** half(K) of §1.2: 30 digits. */
export async function safetyHalf(pub) {
  const key = pub.key;
  let h = concat(Uint8Array.of(0, 0), key);
  for (let i = 0; i < SAFETY_ITERATIONS; i++) h = await sha512(concat(h, key));
  let digits = '';
  for (let i = 0; i < 6; i++) {
    let c = 0;
    for (const x of h.subarray(5 * i, 5 * i + 5)) c = c * 256 + x; // 40 bits: exact in a Number
    digits += String(c % 100000).padStart(5, '0');
  }
  return digits;
}

/** The safety number of two identities (§1.2): 12 groups of 5 digits, the
 *  same whatever the order of a and b. */
export async function safetyNumber(a, b) {
  const [x, y] = await Promise.all([safetyHalf(a), safetyHalf(b)]);
  return combineSafetyHalves(x, y);
}

/** The safety number from two halves (safetyHalf), in either order. */
export function combineSafetyHalves(x, y) {
  if (y < x) [x, y] = [y, x];
  return (x + y).match(/.{5}/g).join(' ');
}
