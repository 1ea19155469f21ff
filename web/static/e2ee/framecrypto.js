// The per-frame half of call encryption, as the encoded-transform worker
// runs it: one FrameSealer for the outgoing track and one FrameReceiver
// for every incoming one, fed with keys by CallCrypto's messages, and the
// TransformStream that encrypts or decrypts RTCEncodedAudioFrames. It has
// no DOM or Worker dependency, so a page can run it too (tests do).
//
// Messages it handles (CallCrypto posts them; all structured-cloneable):
//   {type: 'sendKey', key}                      seal with key from now on
//   {type: 'recvKey', participantId, key}       install a peer's key
//   {type: 'removeParticipant', participantId}  forget a peer's keys
//   {type: 'stream', direction, streamId, participantId, readable, writable}
//        the createEncodedStreams fallback: transform this stream pair
//   {type: 'label', streamId, participantId}    a receiver now carries
//        another publisher (transceiver reuse); a stream's frames must be
//        sealed with its publisher's keys (else wrong_sender)
//   {type: 'blocked', participantId, blocked}   drop that participant's
//        frames as identity_unverified (its changed identity is not accepted)
// key = {suite, senderIndex, generation, step, baseKey: Uint8Array}.
//
// It posts {type: 'stats', stats} when counters changed (every
// statsIntervalMs), and {type: 'error', message} on trouble.

import { FrameReceiver, FrameSealer } from './framekeys.js';

const EMPTY_STATS = () => ({ encrypted: 0, unencrypted_dropped: 0 });

export class FrameCrypto {
  constructor({ now = () => Date.now(), post = () => {}, statsIntervalMs = 1000 } = {}) {
    this._now = now;
    this._post = post;
    this.sealer = new FrameSealer();
    this.receiver = new FrameReceiver();
    this._send = EMPTY_STATS();
    this._labels = new Map(); // streamId -> participantId
    this._blocked = new Set(); // participant ids
    this._lastStats = '';
    this._queue = Promise.resolve();
    this._interval = statsIntervalMs > 0 ? setInterval(() => this.postStats(), statsIntervalMs) : null;
  }

  /** Applies one message from CallCrypto. Messages apply in the order
   *  received (a key removal never overtakes the installation before it). */
  handleMessage(m) {
    this._queue = this._queue.then(() => this._handle(m));
    return this._queue;
  }

  async _handle(m) {
    try {
      switch (m && m.type) {
        case 'sendKey':
          await this.sealer.setKey(m.key);
          break;
        case 'recvKey':
          await this.receiver.setKey(m.participantId, m.key, this._now());
          break;
        case 'removeParticipant':
          this.receiver.removeParticipant(m.participantId);
          break;
        case 'stream':
          this.attach(m.readable, m.writable, m);
          break;
        case 'label':
          this._labels.set(m.streamId, m.participantId);
          break;
        case 'blocked':
          if (m.blocked) this._blocked.add(m.participantId);
          else this._blocked.delete(m.participantId);
          break;
        default:
          break; // unknown messages are ignored, like unknown content types
      }
    } catch (e) {
      this._post({ type: 'error', message: `${m && m.type}: ${e.message}` });
    }
  }

  /** Encrypts one outgoing frame; null means drop it (no key yet). */
  async encryptFrame(data) {
    const out = await this.sealer.seal(data);
    if (out === null) this._send.unencrypted_dropped++;
    else if (data.length > 0) this._send.encrypted++;
    return out;
  }

  /** Decrypts one incoming frame; null means drop it (counted by reason). */
  async decryptFrame(data, trackParticipant) {
    if (data.length > 0 && this._blocked.has(trackParticipant)) {
      this.receiver._count('identity_unverified', trackParticipant);
      return null;
    }
    const r = await this.receiver.open(data, this._now(), trackParticipant);
    return r.drop ? null : r.plaintext;
  }

  /** A TransformStream of RTCEncodedAudioFrames (or anything with a
   *  `data` ArrayBuffer) for one direction. Frames that cannot be
   *  encrypted or decrypted are not enqueued. */
  transformStream(direction, streamId, participantId) {
    if (streamId !== undefined && participantId !== undefined) this._labels.set(streamId, participantId);
    const send = direction === 'send';
    return new TransformStream({
      transform: async (frame, controller) => {
        const data = new Uint8Array(frame.data);
        let out;
        try {
          out = send ? await this.encryptFrame(data) : await this.decryptFrame(data, this._labels.get(streamId));
        } catch (e) {
          this._post({ type: 'error', message: `${direction} frame: ${e.message}` });
          return;
        }
        if (out === null) return;
        if (out !== data) {
          frame.data = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength ? out.buffer : out.slice().buffer;
        }
        controller.enqueue(frame);
      },
    });
  }

  /** Pipes readable through the transform of options.direction into
   *  writable (RTCRtpScriptTransform's transformer or the encoded streams). */
  attach(readable, writable, options = {}) {
    const direction = options.direction === 'send' ? 'send' : 'recv';
    readable
      .pipeThrough(this.transformStream(direction, options.streamId, options.participantId))
      .pipeTo(writable)
      .catch((e) => this._post({ type: 'error', message: `${direction} stream ${options.streamId}: ${e.message}` }));
  }

  /** The counters: send side, receive side (by drop reason) and per
   *  participant whose track carried the frames. */
  stats() {
    const byParticipant = {};
    for (const [p, s] of this.receiver.byParticipant) byParticipant[p] = { ...s };
    return { ...this._send, ...this.receiver.stats, byParticipant };
  }

  /** Posts the stats if they changed since the last post. */
  postStats() {
    const stats = this.stats();
    const key = JSON.stringify(stats);
    if (key === this._lastStats) return;
    this._lastStats = key;
    this._post({ type: 'stats', stats });
  }

  close() {
    if (this._interval !== null) clearInterval(this._interval);
    this.sealer.close();
    this.receiver.close();
  }
}
