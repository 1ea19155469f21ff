// Payload framing of docs/PROTOCOL.md: envelope payloads (§3), pqxdh-init
// bodies (§4.2), ratchet plaintext contents (§5.4), frame-key messages
// (§6.2) and acks (§6.3).

import { concat, readU16, readU32, u16, u32 } from './bytes.js';
import { PUBLIC_IDENTITY_SIZE } from './identity.js';
import { KEM_CIPHERTEXT_SIZE } from './mlkem.js';
import { suiteParams } from './sframe.js';
import { ProtocolError } from './errors.js';

export { ProtocolError };

export const PAYLOAD_VERSION = 0x01;
export const TYPE_PQXDH_INIT = 0x01;
export const TYPE_RATCHET = 0x02;

export const CONTENT_FRAME_KEY = 0x01;
export const CONTENT_FRAME_KEY_ACK = 0x02;
export const CONTENT_MUTE_STATE = 0x10;

/** Offset of IK_A in a pqxdh-init payload (after version and type). */
export const PUBLIC_IDENTITY_OFFSET = 2;

const KEM_ID_OFFSET = PUBLIC_IDENTITY_SIZE + 32 + 4 + 1 + 4;
/** IK_A (128) || EK_A (32) || spk_id (4) || opk_flag (1) || opk_id (4) ||
 *  kem_id (4) || kem_ct (1088). */
export const INIT_PREFIX_SIZE = KEM_ID_OFFSET + 4 + KEM_CIPHERTEXT_SIZE;
/** dh (32) || pn (4) || n (4). */
export const RATCHET_HEADER_SIZE = 40;

const FRAME_KEY_HEADER_SIZE = 12;
const FRAME_KEY_ACK_SIZE = 10;

/** Splits a payload into {type, body}; throws on unknown versions/types. */
export function parsePayload(p) {
  if (!(p instanceof Uint8Array) || p.length < 2 || p[0] !== PAYLOAD_VERSION || (p[1] !== TYPE_PQXDH_INIT && p[1] !== TYPE_RATCHET)) {
    throw new ProtocolError('invalid', 'payload: unknown version or type');
  }
  return { type: p[1], body: p.subarray(2) };
}

/** The pqxdh-init prefix before the ratchet message. */
export function encodeInitPrefix(ikA, ekA, spkId, opkId /* null when none */, kemId, kemCiphertext) {
  if (kemCiphertext.length !== KEM_CIPHERTEXT_SIZE) throw new ProtocolError('invalid', 'pqxdh-init: wrong KEM ciphertext size');
  return concat(ikA, ekA, u32(spkId), Uint8Array.of(opkId == null ? 0 : 1), u32(opkId == null ? 0 : opkId), u32(kemId), kemCiphertext);
}

/** Decodes a pqxdh-init body's prefix fields (IK_A not yet verified). */
export function parseInitPrefix(body) {
  if (body.length < INIT_PREFIX_SIZE) throw new ProtocolError('invalid', 'pqxdh-init: too short');
  const flag = body[164];
  const opkId = readU32(body, 165);
  if (flag > 1 || (flag === 0 && opkId !== 0)) throw new ProtocolError('invalid', 'pqxdh-init: bad one-time prekey flag');
  return {
    identity: body.subarray(0, 128),
    ephemeral: body.subarray(128, 160),
    spkId: readU32(body, 160),
    opkId: flag === 1 ? opkId : null,
    kemId: readU32(body, KEM_ID_OFFSET),
    kemCiphertext: body.subarray(KEM_ID_OFFSET + 4, INIT_PREFIX_SIZE),
    prefix: body.subarray(0, INIT_PREFIX_SIZE),
    message: body.subarray(INIT_PREFIX_SIZE),
  };
}

/** A frame key: {suite, senderIndex, generation, step, baseKey}. */
export function encodeFrameKey(k) {
  const p = suiteParams(k.suite);
  if (!p || k.baseKey.length !== p.nh) throw new ProtocolError('invalid', 'frame key: bad suite or base key size');
  return concat(Uint8Array.of(CONTENT_FRAME_KEY), u16(k.suite), u32(k.senderIndex), u32(k.generation), Uint8Array.of(k.step), k.baseKey);
}

export function parseFrameKey(b) {
  if (b.length < FRAME_KEY_HEADER_SIZE || b[0] !== CONTENT_FRAME_KEY) throw new ProtocolError('invalid', 'frame key: malformed');
  const suite = readU16(b, 1);
  const p = suiteParams(suite);
  if (!p) throw new ProtocolError('unknown_suite', `frame key: unknown cipher suite ${suite}`);
  if (b.length !== FRAME_KEY_HEADER_SIZE + p.nh) throw new ProtocolError('invalid', 'frame key: wrong length');
  return {
    suite,
    senderIndex: readU32(b, 3),
    generation: readU32(b, 7),
    step: b[11],
    baseKey: b.slice(FRAME_KEY_HEADER_SIZE),
  };
}

/** An ack: {senderIndex, generation, step}. */
export function encodeFrameKeyAck(a) {
  return concat(Uint8Array.of(CONTENT_FRAME_KEY_ACK), u32(a.senderIndex), u32(a.generation), Uint8Array.of(a.step));
}

export function parseFrameKeyAck(b) {
  if (b.length !== FRAME_KEY_ACK_SIZE || b[0] !== CONTENT_FRAME_KEY_ACK) throw new ProtocolError('invalid', 'frame key ack: malformed');
  return { senderIndex: readU32(b, 1), generation: readU32(b, 5), step: b[9] };
}

/** A mute-state message (§6.6): 0x10 then 0x01 (muted) or 0x00. */
export function encodeMuteState(muted) {
  return Uint8Array.of(CONTENT_MUTE_STATE, muted ? 1 : 0);
}

/** Decodes a mute-state message; true when muted. */
export function parseMuteState(b) {
  if (b.length !== 2 || b[0] !== CONTENT_MUTE_STATE || b[1] > 1) throw new ProtocolError('invalid', 'mute state: malformed');
  return b[1] === 1;
}
