// Encrypted files (docs/PROTOCOL.md §12), as e2ee/stream.go writes and
// reads them: a fresh key per file, the plaintext in chunks of 64 KiB,
// each sealed with AES-256-GCM under the nonce counter (11 bytes) || last
// flag (1 byte), with the 8-byte header as associated data. A chunk
// altered, missing, repeated, moved or cut makes decryption fail with
// ProtocolError code 'file_corrupt'.

import { concat, equal, randomBytes, utf8 } from './bytes.js';
import { ProtocolError } from './errors.js';
import { ZERO_SALT, aesGcmKey, aesGcmOpen, aesGcmSeal, hkdf } from './primitives.js';

export const FILE_KEY_SIZE = 32;
export const FILE_CHUNK_SIZE = 64 * 1024;
export const FILE_HEADER = Uint8Array.of(0x53, 0x4f, 0x54, 0x46, 0x01, 0x00, 0x00, FILE_CHUNK_SIZE >> 10);
const TAG_SIZE = 16;
const ENCRYPTED_CHUNK_SIZE = FILE_CHUNK_SIZE + TAG_SIZE;
const FILE_KEY_INFO = utf8('Sotto file v1');

/** A fresh file key (use it for one file only). */
export function newFileKey(random = randomBytes) {
  return random(FILE_KEY_SIZE);
}

/** Bytes of the encrypted form of a file of n bytes. */
export function encryptedFileSize(n) {
  return FILE_HEADER.length + n + TAG_SIZE * Math.max(1, Math.ceil(n / FILE_CHUNK_SIZE));
}

/** The AES-256-GCM key of the chunks: HKDF(file key, zero salt, "Sotto file v1"). */
export function fileAEADKey(key) {
  if (!(key instanceof Uint8Array) || key.length !== FILE_KEY_SIZE) throw new ProtocolError('invalid', 'file key must be 32 bytes');
  return hkdf(key, ZERO_SALT, FILE_KEY_INFO, 32);
}

/** The nonce of chunk counter: 11-byte big-endian counter, then 0x01 for
 *  the last chunk, 0x00 otherwise. */
export function chunkNonce(counter, last) {
  const n = new Uint8Array(12);
  new DataView(n.buffer).setBigUint64(3, BigInt(counter));
  n[11] = last ? 1 : 0;
  return n;
}

async function chunkKey(key) {
  const raw = await fileAEADKey(key);
  try {
    return await aesGcmKey(raw);
  } finally {
    raw.fill(0);
  }
}

/** Bytes [start, end) of a Uint8Array or a Blob (a File). */
async function slice(source, start, end) {
  const part = source.slice(start, end);
  return part instanceof Uint8Array ? part : new Uint8Array(await part.arrayBuffer());
}

/** Encrypts source (a Uint8Array, or a Blob such as a File, read a chunk
 *  at a time) under key. onProgress(done, total) follows the plaintext.
 *  Resolves to the whole encrypted file. */
export async function encryptFile(key, source, onProgress = () => {}) {
  const total = source instanceof Uint8Array ? source.length : source.size;
  const ck = await chunkKey(key);
  const out = new Uint8Array(encryptedFileSize(total));
  out.set(FILE_HEADER, 0);
  let o = FILE_HEADER.length;
  const chunks = Math.max(1, Math.ceil(total / FILE_CHUNK_SIZE));
  for (let i = 0; i < chunks; i++) {
    const start = i * FILE_CHUNK_SIZE;
    const pt = await slice(source, start, Math.min(total, start + FILE_CHUNK_SIZE));
    const sealed = await aesGcmSeal(ck, chunkNonce(i, i === chunks - 1), pt, FILE_HEADER);
    out.set(sealed, o);
    o += sealed.length;
    onProgress(start + pt.length, total);
  }
  return out;
}

function corrupt(what) {
  return new ProtocolError('file_corrupt', `encrypted file is corrupt, truncated or reordered: ${what}`);
}

/** Decrypts an encrypted file (Uint8Array) under key; onProgress(done,
 *  total) follows the ciphertext. Resolves to the plaintext, or rejects
 *  with code 'file_corrupt' when anything is not as the sender wrote it. */
export async function decryptFile(key, ct, onProgress = () => {}) {
  const ck = await chunkKey(key);
  if (ct.length < FILE_HEADER.length || !equal(ct.subarray(0, FILE_HEADER.length), FILE_HEADER)) throw corrupt('unknown header');
  const parts = [];
  let o = FILE_HEADER.length;
  for (let i = 0; ; i++) {
    // A chunk that does not reach the end is a full one and not the last.
    const last = ct.length - o <= ENCRYPTED_CHUNK_SIZE;
    const end = last ? ct.length : o + ENCRYPTED_CHUNK_SIZE;
    if (end - o < TAG_SIZE) throw corrupt(`chunk ${i} cut short`);
    const pt = await aesGcmOpen(ck, chunkNonce(i, last), ct.subarray(o, end), FILE_HEADER);
    if (pt === null) throw corrupt(`chunk ${i} does not open`);
    if (last && pt.length === 0 && i > 0) throw corrupt(`empty last chunk ${i}`);
    parts.push(pt);
    o = end;
    onProgress(o, ct.length);
    if (last) return concat(...parts);
  }
}
