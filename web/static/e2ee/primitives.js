// Thin wrappers over WebCrypto for the primitives of docs/PROTOCOL.md:
// SHA-256/512, HMAC-SHA256, HKDF, X25519, Ed25519, AES-GCM, AES-CTR.
// Private keys come in as raw bytes (so that test vectors can be replayed)
// and are imported through PKCS #8.

import { concat, fromBase64url, wipe } from './bytes.js';

const subtle = crypto.subtle;

// PKCS #8 prefixes of RFC 8410 for a 32-byte private key.
const PKCS8_X25519 = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20);
const PKCS8_ED25519 = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20);

export const ZERO_SALT = new Uint8Array(32);

export async function sha256(data) {
  return new Uint8Array(await subtle.digest('SHA-256', data));
}

export async function sha512(data) {
  return new Uint8Array(await subtle.digest('SHA-512', data));
}

/** An HMAC-SHA256 CryptoKey for key (which must not be empty). */
export function hmacKey(key, hash = 'SHA-256') {
  return subtle.importKey('raw', key, { name: 'HMAC', hash }, false, ['sign']);
}

export async function hmacSha256(key, data) {
  return new Uint8Array(await subtle.sign('HMAC', await hmacKey(key), data));
}

/** HKDF(ikm, salt, info, L) with hash 'SHA-256' or 'SHA-512'. An empty salt
 *  means HashLen zero bytes (RFC 5869). */
export async function hkdf(ikm, salt, info, length, hash = 'SHA-256') {
  const key = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  const bits = await subtle.deriveBits({ name: 'HKDF', hash, salt, info }, key, length * 8);
  return new Uint8Array(bits);
}

/** An X25519 key pair from a 32-byte private scalar (RFC 7748; clamping
 *  happens inside X25519). */
export async function x25519KeyPair(priv) {
  if (priv.length !== 32) throw new Error('x25519: private key must be 32 bytes');
  const der = concat(PKCS8_X25519, priv);
  const key = await subtle.importKey('pkcs8', der, { name: 'X25519' }, true, ['deriveBits']);
  wipe(der);
  const jwk = await subtle.exportKey('jwk', key);
  return { privateKey: key, publicKey: fromBase64url(jwk.x), privateBytes: priv.slice() };
}

/** The X25519 public key of a 32-byte private scalar. */
export async function x25519Public(priv) {
  return (await x25519KeyPair(priv)).publicKey;
}

/** X25519(privateKey, pub); rejects an all-zero output (low-order peer key). */
export async function x25519(privateKey, pub) {
  if (pub.length !== 32) throw new Error('x25519: public key must be 32 bytes');
  const peer = await subtle.importKey('raw', pub, { name: 'X25519' }, true, []);
  let out;
  try {
    out = new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: peer }, privateKey, 256));
  } catch (e) {
    throw new Error(`x25519: ${e.message}`);
  }
  if (out.every((x) => x === 0)) throw new Error('x25519: low-order public key');
  return out;
}

/** An Ed25519 signing key from a 32-byte seed, with its public key. */
export async function ed25519KeyPair(seed) {
  if (seed.length !== 32) throw new Error('ed25519: seed must be 32 bytes');
  const der = concat(PKCS8_ED25519, seed);
  const key = await subtle.importKey('pkcs8', der, { name: 'Ed25519' }, true, ['sign']);
  wipe(der);
  const jwk = await subtle.exportKey('jwk', key);
  return { privateKey: key, publicKey: fromBase64url(jwk.x) };
}

export async function ed25519Sign(privateKey, msg) {
  return new Uint8Array(await subtle.sign('Ed25519', privateKey, msg));
}

export async function ed25519Verify(pub, sig, msg) {
  if (pub.length !== 32 || sig.length !== 64) return false;
  try {
    const key = await subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
    return await subtle.verify('Ed25519', key, sig, msg);
  } catch {
    return false;
  }
}

export function aesGcmKey(key) {
  return subtle.importKey('raw', key, 'AES-GCM', false, ['encrypt', 'decrypt']);
}

/** AES-GCM seal: ciphertext || 16-byte tag. */
export async function aesGcmSeal(cryptoKey, iv, plaintext, aad) {
  return new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad, tagLength: 128 }, cryptoKey, plaintext));
}

/** AES-GCM open; resolves to null when the tag does not verify. */
export async function aesGcmOpen(cryptoKey, iv, ciphertext, aad) {
  try {
    return new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv, additionalData: aad, tagLength: 128 }, cryptoKey, ciphertext));
  } catch {
    return null;
  }
}

export function aesCtrKey(key) {
  return subtle.importKey('raw', key, 'AES-CTR', false, ['encrypt', 'decrypt']);
}

/** AES-CTR with a 16-byte initial counter block and a 32-bit block counter
 *  (RFC 9605 §4.5.1: nonce || 0x00000000). Encryption and decryption are
 *  the same operation. */
export async function aesCtr(cryptoKey, counterBlock, data) {
  return new Uint8Array(await subtle.encrypt({ name: 'AES-CTR', counter: counterBlock, length: 32 }, cryptoKey, data));
}
