// Message and receipt contents (docs/PROTOCOL.md §11), as e2ee/message.go
// writes and reads them. They travel as ratchet plaintexts, one copy per
// recipient. seq is a BigInt (u64); sentMs and file sizes are Numbers.
//
//   message = 0x03 || seq u64 || sent_ms u64 || flags u8 (0x01 direct)
//             || kind u8 (0x01 text, 0x02 file) || body
//   text    = UTF-8, 1..4096 bytes
//   file    = key (32) || digest (32) || size u64 || u8 len || blob id
//             || u16 len || name (UTF-8) || u8 len || media type (ASCII)
//   receipt = 0x04 || seq u64

import { concat, readU16, readU64, u16, u64, utf8 } from './bytes.js';
import { ProtocolError } from './errors.js';
import { FILE_KEY_SIZE } from './stream.js';

export const CONTENT_MESSAGE = 0x03;
export const CONTENT_RECEIPT = 0x04;
export const MAX_MESSAGE_TEXT = 4096;
export const MAX_FILE_NAME = 255;
export const MAX_FILE_TYPE = 127;
export const MAX_BLOB_ID = 64;
const DIGEST_SIZE = 32;
const HEADER_SIZE = 19;
const KIND_TEXT = 0x01;
const KIND_FILE = 0x02;
const FLAG_DIRECT = 0x01;

const strict = new TextDecoder('utf-8', { fatal: true });

function invalid(what) {
  return new ProtocolError('invalid', `message: ${what}`);
}

function check(m) {
  if (typeof m.seq !== 'bigint' || m.seq <= 0n || m.seq >= 1n << 64n) throw invalid('sequence number out of range');
  if (!m.file) {
    const t = utf8(m.text || '');
    if (t.length === 0 || t.length > MAX_MESSAGE_TEXT) throw invalid(`text of ${t.length} bytes, want 1 to ${MAX_MESSAGE_TEXT}`);
    return;
  }
  const f = m.file;
  if (m.text) throw invalid('file message with text');
  if (!(f.key instanceof Uint8Array) || f.key.length !== FILE_KEY_SIZE || !(f.digest instanceof Uint8Array) || f.digest.length !== DIGEST_SIZE) {
    throw invalid('file key or digest');
  }
  if (!Number.isSafeInteger(f.size) || f.size < 0) throw invalid('file size');
  if (typeof f.blobId !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(f.blobId)) throw invalid('blob id');
  const name = utf8(f.name || '');
  if (name.length === 0 || name.length > MAX_FILE_NAME) throw invalid('file name');
  if (typeof f.type !== 'string' || f.type.length > MAX_FILE_TYPE || /[^\x20-\x7e]/.test(f.type)) throw invalid('file type');
}

/** Encodes {seq, sentMs, direct, text} or {seq, sentMs, direct, file:
 *  {blobId, key, digest, size, name, type}}. */
export function encodeMessage(m) {
  check(m);
  const head = concat(Uint8Array.of(CONTENT_MESSAGE), u64(m.seq), u64(m.sentMs), Uint8Array.of(m.direct ? FLAG_DIRECT : 0));
  if (!m.file) return concat(head, Uint8Array.of(KIND_TEXT), utf8(m.text));
  const f = m.file;
  const id = utf8(f.blobId);
  const name = utf8(f.name);
  const type = utf8(f.type);
  return concat(head, Uint8Array.of(KIND_FILE), f.key, f.digest, u64(f.size), Uint8Array.of(id.length), id, u16(name.length), name, Uint8Array.of(type.length), type);
}

/** Decodes a message content; throws ProtocolError 'invalid'. */
export function parseMessage(b) {
  if (!(b instanceof Uint8Array) || b.length < HEADER_SIZE || b[0] !== CONTENT_MESSAGE) throw invalid('malformed');
  const sent = readU64(b, 9);
  if (b[17] & ~FLAG_DIRECT || sent > 1n << 62n) throw invalid('unknown flags or time');
  const m = { seq: readU64(b, 1), sentMs: Number(sent), direct: (b[17] & FLAG_DIRECT) !== 0, text: '', file: null };
  const body = b.subarray(HEADER_SIZE);
  try {
    if (b[18] === KIND_TEXT) {
      m.text = strict.decode(body);
    } else if (b[18] === KIND_FILE) {
      m.file = parseFile(body);
    } else {
      throw invalid(`kind ${b[18]}`);
    }
  } catch (e) {
    throw e instanceof ProtocolError ? e : invalid('not UTF-8');
  }
  check(m);
  return m;
}

function parseFile(b) {
  let o = 0;
  const take = (n) => {
    if (o + n > b.length) throw invalid('file fields cut short');
    const v = b.slice(o, o + n);
    o += n;
    return v;
  };
  const key = take(FILE_KEY_SIZE);
  const digest = take(DIGEST_SIZE);
  const size = readU64(take(8));
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid('file size');
  const blobId = strict.decode(take(take(1)[0]));
  const name = strict.decode(take(readU16(take(2))));
  const type = strict.decode(take(take(1)[0]));
  if (o !== b.length) throw invalid('data after the file fields');
  return { blobId, key, digest, size: Number(size), name, type };
}

export function encodeReceipt(seq) {
  if (typeof seq !== 'bigint' || seq <= 0n) throw invalid('receipt of sequence number 0');
  return concat(Uint8Array.of(CONTENT_RECEIPT), u64(seq));
}

/** The seq (BigInt) a receipt acknowledges; throws ProtocolError 'invalid'. */
export function parseReceipt(b) {
  if (!(b instanceof Uint8Array) || b.length !== 9 || b[0] !== CONTENT_RECEIPT) throw invalid('malformed receipt');
  const seq = readU64(b, 1);
  if (seq === 0n) throw invalid('receipt of sequence number 0');
  return seq;
}
