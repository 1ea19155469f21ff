// Frame keys (docs/PROTOCOL.md §6): the KID layout, a sender's chain of
// SFrame base keys (advance on join, rekey with a delayed switch on
// leave), the sealer that encrypts frames with the current key, and the
// receiver's key ring (ratchet forward, grace period, replay window, drop
// counters by reason).
//
// FrameSender is the key schedule (it lives with the sessions, on the
// main thread); FrameSealer and FrameReceiver do the per-frame work (in
// the encoded-transform worker) and are fed keys by messages.

import { equal, randomBytes, readU32, wipe } from './bytes.js';
import { ProtocolError } from './errors.js';
import { DEFAULT_SUITE, SFrameKey, decodeHeader, ratchetBaseKey, suiteParams } from './sframe.js';

export const MAX_RATCHET_STEP = 255;
export const DEFAULT_SWITCH_DELAY_MS = 1000;
export const MAX_SWITCH_DELAY_MS = 2000;
export const DEFAULT_GRACE_PERIOD_MS = 1000;
export const MAX_RATCHET_AHEAD = 32;
export const REPLAY_WINDOW = 128;
/** How many generations past a sender's newest key a frame may name and
 *  count as awaiting_key rather than unknown_kid (as the Go SDK counts). */
export const GENERATIONS_AHEAD = 8;
const KEY_RING_SIZE = 4;

/** Drop reasons of §6.5, plus wrong_sender: a frame that authenticates
 *  under another participant's key than the one whose track carried it
 *  (§9 step 5: someone re-sending another's frames); awaiting_key: a
 *  frame from a sender whose key has not arrived yet (none of its keys,
 *  or a generation just after the newest held): the normal start of a
 *  stream, not a failure; and identity_unverified: from a participant
 *  whose changed identity the user has not accepted (FrameCrypto counts
 *  those). The Go SDK uses the same names. */
export const DROP_REASONS = ['malformed', 'unknown_kid', 'auth_failed', 'replayed', 'expired_key', 'wrong_sender', 'awaiting_key', 'identity_unverified'];

/** KID = sender_index << 16 | (generation mod 256) << 8 | step, as BigInt. */
export function kidOf(senderIndex, generation, step) {
  return (BigInt(senderIndex >>> 0) << 16n) | BigInt(((generation & 0xff) << 8) | (step & 0xff));
}

/** A frame key as it travels (§6.2): {suite, senderIndex, generation,
 *  step, baseKey}. */
function frameKey(suite, senderIndex, c) {
  return { suite, senderIndex, generation: c.generation, step: c.step, baseKey: c.baseKey.slice() };
}

/** The ack a receiver sends after installing k (§6.3). */
export function ackOf(k) {
  return { senderIndex: k.senderIndex, generation: k.generation, step: k.step };
}

/** The key schedule of one sender: its sender index and its chain, with a
 *  pending fresh chain during a switch-over. */
export class FrameSender {
  constructor(suite, random, switchDelayMs, index, cur) {
    this.suite = suite;
    this._random = random;
    this.switchDelayMs = switchDelayMs;
    /** The random u32 announced in every KID of this call. */
    this.senderIndex = index;
    this._cur = cur; // {generation, step, baseKey}
    this._pending = null;
    this._pendingSince = 0;
    this._waitFor = null;
  }

  /** A sender with a random sender index and a fresh chain (generation 0,
   *  step 0). */
  static create({ suite = DEFAULT_SUITE, random = randomBytes, switchDelayMs = DEFAULT_SWITCH_DELAY_MS } = {}) {
    const p = suiteParams(suite);
    if (!p) throw new ProtocolError('unknown_suite', `unknown cipher suite ${suite}`);
    if (!(switchDelayMs > 0 && switchDelayMs <= MAX_SWITCH_DELAY_MS)) throw new RangeError(`switch delay ${switchDelayMs} ms outside (0, ${MAX_SWITCH_DELAY_MS}]`);
    const index = readU32(random(4));
    return new FrameSender(suite, random, switchDelayMs, index, { generation: 0, step: 0, baseKey: random(p.nh) });
  }

  /** What a peer needs now: the current key and, during a switch-over, the
   *  pending one. Send each to a newcomer. */
  keys() {
    const out = [frameKey(this.suite, this.senderIndex, this._cur)];
    if (this._pending) out.push(frameKey(this.suite, this.senderIndex, this._pending));
    return out;
  }

  /** The key frames are sealed with now (after maybeSwitch). */
  current() {
    return frameKey(this.suite, this.senderIndex, this._cur);
  }

  /** Whether a switch-over is pending, and until when (ms). */
  get pendingUntil() {
    return this._pending ? this._pendingSince + this.switchDelayMs : null;
  }

  /** Ratchets the chain (and a pending one) one step because someone
   *  joined; resolves to keys() for the newcomer. Throws chain_exhausted at
   *  step 255: rekey instead. */
  async advance() {
    if (this._cur.step === MAX_RATCHET_STEP || (this._pending && this._pending.step === MAX_RATCHET_STEP)) {
      throw new ProtocolError('chain_exhausted', 'frame-key chain exhausted; rekey');
    }
    const next = async (c) => ({ generation: c.generation, step: c.step + 1, baseKey: await ratchetBaseKey(this.suite, c.baseKey) });
    const cur = await next(this._cur);
    const pending = this._pending ? await next(this._pending) : null;
    wipe(this._cur.baseKey);
    this._cur = cur;
    if (this._pending) {
      wipe(this._pending.baseKey);
      this._pending = pending;
    }
    return this.keys();
  }

  /** Starts a fresh random chain (generation + 1) because someone left, to
   *  be sent to each of peers (ids of those present). The sender switches
   *  when all of them acknowledged it or the switch delay has passed since
   *  now. Returns the new key. */
  rekey(now, peers) {
    const gen = ((this._pending || this._cur).generation + 1) >>> 0;
    if (this._pending) wipe(this._pending.baseKey);
    this._pending = { generation: gen, step: 0, baseKey: this._random(suiteParams(this.suite).nh) };
    this._pendingSince = now;
    this._waitFor = new Set(peers);
    const k = frameKey(this.suite, this.senderIndex, this._pending);
    if (this._waitFor.size === 0) this._activate();
    return k;
  }

  /** Records that peer installed a key of ours; true if that completed a
   *  switch-over (the current key changed). */
  acknowledge(peer, ack) {
    const p = this._pending;
    if (!p || ack.senderIndex !== this.senderIndex || ack.generation !== p.generation || ack.step !== p.step) return false;
    this._waitFor.delete(peer);
    if (this._waitFor.size > 0) return false;
    this._activate();
    return true;
  }

  /** Forgets a peer that left from the acknowledgements awaited; true if
   *  that completed a switch-over. */
  forget(peer) {
    if (!this._pending || !this._waitFor.delete(peer) || this._waitFor.size > 0) return false;
    this._activate();
    return true;
  }

  /** Switches to the pending chain if its delay has passed; true if it did. */
  maybeSwitch(now) {
    if (this._pending && now - this._pendingSince >= this.switchDelayMs) {
      this._activate();
      return true;
    }
    return false;
  }

  _activate() {
    wipe(this._cur.baseKey);
    this._cur = this._pending;
    this._pending = null;
    this._waitFor = null;
  }

  close() {
    wipe(this._cur.baseKey);
    if (this._pending) wipe(this._pending.baseKey);
  }
}

/** Seals frames with the key it was last given. CTR starts at 0 for each
 *  key and never repeats for a key. */
export class FrameSealer {
  constructor() {
    this._key = null; // {kid, baseKey, sk, ctr}
    this._setting = Promise.resolve();
  }

  /** Installs the key to seal with (a frame key). Giving the current key
   *  again keeps its counter. */
  setKey(k) {
    this._setting = this._setting.then(async () => {
      const kid = kidOf(k.senderIndex, k.generation, k.step);
      const cur = this._key;
      if (cur && cur.kid === kid && equal(cur.baseKey, k.baseKey)) return;
      const sk = await SFrameKey.create(k.suite, kid, k.baseKey);
      this._key = { kid, baseKey: k.baseKey.slice(), sk, ctr: 0n, generation: k.generation, step: k.step };
      if (cur) {
        wipe(cur.baseKey);
        cur.sk.destroy();
      }
    });
    return this._setting;
  }

  /** Whether a key is installed. */
  get ready() {
    return this._key !== null;
  }

  /** {generation, step, kid} of the key in use, or null. */
  get current() {
    return this._key && { generation: this._key.generation, step: this._key.step, kid: this._key.kid };
  }

  /** Seals one frame; resolves to the SFrame frame, or null when there is
   *  no key yet (the frame must then be dropped, never sent in clear). An
   *  empty frame gives an empty frame. */
  async seal(frame) {
    if (frame.length === 0) return frame;
    const k = this._key;
    if (!k) return null;
    const ctr = k.ctr;
    k.ctr = ctr + 1n; // reserve the counter before the asynchronous seal
    return k.sk.seal(ctr, frame);
  }

  close() {
    if (this._key) {
      wipe(this._key.baseKey);
      this._key.sk.destroy();
      this._key = null;
    }
  }
}

/** The replay window of one key: counters already seen, up to 127 below
 *  the highest. Bit c mod 128 stands for counter c. */
class ReplayWindow {
  constructor() {
    this.seen = false;
    this.max = 0n;
    this.bits = new Uint8Array(REPLAY_WINDOW);
  }

  check(ctr) {
    if (!this.seen || ctr > this.max) return true;
    const d = this.max - ctr;
    return d < BigInt(REPLAY_WINDOW) && this.bits[Number(ctr % 128n)] === 0;
  }

  mark(ctr) {
    if (!this.seen || ctr > this.max) {
      if (!this.seen || ctr - this.max >= BigInt(REPLAY_WINDOW)) {
        this.bits.fill(0);
      } else {
        for (let c = this.max + 1n; c < ctr; c++) this.bits[Number(c % 128n)] = 0;
      }
      this.seen = true;
      this.max = ctr;
    }
    this.bits[Number(ctr % 128n)] = 1;
  }
}

function older(a, b) {
  return a.generation < b.generation || (a.generation === b.generation && a.step < b.step);
}

function emptyStats() {
  const s = { decrypted: 0 };
  for (const r of DROP_REASONS) s[r] = 0;
  return s;
}

/** Opens the frames of every other participant (§6.5): a ring of up to 4
 *  keys per sender, bound to the participant whose session delivered them. */
export class FrameReceiver {
  constructor({ gracePeriodMs = DEFAULT_GRACE_PERIOD_MS } = {}) {
    this.gracePeriodMs = gracePeriodMs > 0 ? gracePeriodMs : DEFAULT_GRACE_PERIOD_MS;
    this._senders = new Map(); // sender index -> {participant, keys: [ringKey]}
    this._byParticipant = new Map(); // participant -> sender index
    this.stats = emptyStats();
    this.byParticipant = new Map(); // participant -> stats
  }

  /** Installs a frame key that participant sent through its session and
   *  resolves to the ack to send back. Throws sender_index_in_use (another
   *  participant holds the index), stale_key (older than a key in use, or
   *  a different key under installed coordinates) or invalid. A
   *  participant announcing a new sender index replaces its keys. */
  async setKey(participant, k, now) {
    const p = suiteParams(k.suite);
    if (!p || !(k.baseKey instanceof Uint8Array) || k.baseKey.length !== p.nh) throw new ProtocolError('invalid', 'set frame key: bad suite or size');
    const idx = k.senderIndex >>> 0;
    const check = () => {
      const s = this._senders.get(idx);
      if (s && s.participant !== participant) throw new ProtocolError('sender_index_in_use', `sender index ${idx} is held by another participant`);
      if (!s) return 'new';
      s.expire(now);
      for (const o of s.keys) {
        if (o.generation === k.generation && o.step === k.step) {
          if (!o.expired && o.suite === k.suite && equal(o.baseKey, k.baseKey)) return 'installed';
          throw new ProtocolError('stale_key', 'frame key already installed with other bytes');
        }
        if (o.used && older(k, o)) throw new ProtocolError('stale_key', 'frame key older than one in use');
      }
      return 'add';
    };
    if (check() === 'installed') return ackOf(k);
    const sk = await SFrameKey.create(k.suite, kidOf(idx, k.generation, k.step), k.baseKey);
    // Re-check: the ring may have changed while the key was derived.
    if (check() === 'installed') return ackOf(k);
    const old = this._byParticipant.get(participant);
    if (old !== undefined && old !== idx) this.removeParticipant(participant);
    let s = this._senders.get(idx);
    if (!s) {
      s = new RemoteSender(participant);
      this._senders.set(idx, s);
      this._byParticipant.set(participant, idx);
    }
    s.add(new RingKey(k.suite, k.generation, k.step, k.baseKey.slice(), sk));
    return ackOf(k);
  }

  /** Forgets and zeroes every key of participant (it left). */
  removeParticipant(participant) {
    const idx = this._byParticipant.get(participant);
    if (idx === undefined) return;
    for (const k of this._senders.get(idx).keys) k.destroy();
    this._senders.delete(idx);
    this._byParticipant.delete(participant);
  }

  /** Whether any key of participant is installed. */
  hasKeys(participant) {
    return this._byParticipant.has(participant);
  }

  /** The participant holding a sender index, or undefined. */
  participantOf(senderIndex) {
    const s = this._senders.get(senderIndex >>> 0);
    return s && s.participant;
  }

  /** Counts a frame dropped for reason (one of DROP_REASONS). */
  _count(reason, trackParticipant) {
    this.stats[reason]++;
    if (trackParticipant !== undefined) {
      let s = this.byParticipant.get(trackParticipant);
      if (!s) this.byParticipant.set(trackParticipant, (s = emptyStats()));
      s[reason]++;
    }
    return { drop: reason };
  }

  /** Authenticates and decrypts one SFrame frame at time now (ms).
   *  Resolves to {plaintext, participant} or {drop: reason}, counted in
   *  stats (and byParticipant under trackParticipant, the participant
   *  whose track carried the frame, when given). The key is found from the
   *  KID; when trackParticipant is given, a frame that authenticates under
   *  another participant's key is dropped as wrong_sender (§9 step 5), and
   *  it tells awaiting_key (no key of that participant yet) from
   *  unknown_kid for an unknown sender index. An empty frame gives an
   *  empty plaintext and counts nothing. */
  async open(frame, now, trackParticipant) {
    if (frame.length === 0) return { plaintext: frame, participant: trackParticipant };
    const hdr = decodeHeader(frame);
    if (!hdr) return this._count('malformed', trackParticipant);
    const idx = Number(hdr.kid >> 16n);
    const s = hdr.kid >> 48n === 0n ? this._senders.get(idx) : undefined;
    if (!s) {
      const awaiting = hdr.kid >> 48n === 0n && (trackParticipant === undefined || !this._byParticipant.has(trackParticipant));
      return this._count(awaiting ? 'awaiting_key' : 'unknown_kid', trackParticipant);
    }
    // Frames under another participant's key are authenticated (a forgery
    // stays auth_failed) but leave that key's replay window and grace
    // period alone: moved frames must not shadow the owner's own.
    const foreign = trackParticipant !== undefined && s.participant !== trackParticipant;
    const gen8 = Number((hdr.kid >> 8n) & 0xffn);
    const step = Number(hdr.kid & 0xffn);
    s.expire(now);
    const find = () => {
      let key = null;
      let base = null;
      for (const k of s.keys) {
        if ((k.generation & 0xff) === gen8 && k.step === step) key = k;
        else if (!k.expired && (k.generation & 0xff) === gen8 && k.step < step && (!base || base.step < k.step)) base = k;
      }
      return { key, base };
    };
    let { key, base } = find();
    if (key && key.expired) return this._count('expired_key', trackParticipant);
    if (!key && (!base || step - base.step > MAX_RATCHET_AHEAD)) {
      // A generation just after the newest one held: the sender switched
      // to a fresh chain whose key is still on its way.
      const newest = s.keys.reduce((g, k) => Math.max(g, k.generation), 0);
      const ahead = (gen8 - (newest & 0xff)) & 0xff;
      return this._count(ahead >= 1 && ahead <= GENERATIONS_AHEAD ? 'awaiting_key' : 'unknown_kid', trackParticipant);
    }
    let pt;
    if (key) {
      if (frame.length - hdr.length < key.sk.overhead) return this._count('malformed', trackParticipant);
      if (!foreign && !key.replay.check(hdr.ctr)) return this._count('replayed', trackParticipant);
      pt = await key.sk.open(frame, hdr);
      if (pt === null) return this._count('auth_failed', trackParticipant);
      if (foreign) return this._count('wrong_sender', trackParticipant);
    } else {
      if (frame.length - hdr.length < suiteParams(base.suite).nt) return this._count('malformed', trackParticipant);
      let baseKey = base.baseKey.slice();
      for (let st = base.step; st < step; st++) {
        const next = await ratchetBaseKey(base.suite, baseKey);
        wipe(baseKey);
        baseKey = next;
      }
      const sk = await SFrameKey.create(base.suite, hdr.kid, baseKey);
      pt = await sk.open(frame, hdr);
      if (pt === null || foreign) {
        wipe(baseKey);
        sk.destroy();
        return this._count(pt === null ? 'auth_failed' : 'wrong_sender', trackParticipant);
      }
      // Another frame may have installed this step meanwhile: use that key.
      ({ key } = find());
      if (key && key.expired) return this._count('expired_key', trackParticipant);
      if (!key) {
        key = new RingKey(base.suite, base.generation, step, baseKey, sk);
        s.add(key);
      } else {
        wipe(baseKey);
      }
    }
    // Checked again: the window may have moved while the frame was opened.
    if (!key.replay.check(hdr.ctr)) return this._count('replayed', trackParticipant);
    key.replay.mark(hdr.ctr);
    s.markUsed(key, now, this.gracePeriodMs);
    this.stats.decrypted++;
    if (trackParticipant !== undefined) {
      let st = this.byParticipant.get(trackParticipant);
      if (!st) this.byParticipant.set(trackParticipant, (st = emptyStats()));
      st.decrypted++;
    }
    return { plaintext: pt, participant: s.participant };
  }

  close() {
    for (const p of [...this._byParticipant.keys()]) this.removeParticipant(p);
  }
}

class RingKey {
  constructor(suite, generation, step, baseKey, sk) {
    this.suite = suite;
    this.generation = generation;
    this.step = step;
    this.baseKey = baseKey;
    this.sk = sk;
    this.replay = new ReplayWindow();
    this.used = false;
    this.retireAt = 0; // 0 while current
    this.expired = false;
  }

  destroy() {
    if (this.baseKey) wipe(this.baseKey);
    if (this.sk) this.sk.destroy();
    this.baseKey = null;
    this.sk = null;
    this.expired = true;
  }
}

class RemoteSender {
  constructor(participant) {
    this.participant = participant;
    this.keys = [];
  }

  expire(now) {
    for (const k of this.keys) if (!k.expired && k.retireAt !== 0 && now >= k.retireAt) k.destroy();
  }

  add(k) {
    if (this.keys.length >= KEY_RING_SIZE) {
      let oldest = 0;
      this.keys.forEach((o, i) => {
        if (older(o, this.keys[oldest])) oldest = i;
      });
      this.keys[oldest].destroy();
      this.keys.splice(oldest, 1);
    }
    this.keys.push(k);
  }

  markUsed(k, now, grace) {
    if (k.used) return;
    k.used = true;
    for (const o of this.keys) if (o !== k && !o.expired && o.retireAt === 0 && older(o, k)) o.retireAt = now + grace;
  }
}
