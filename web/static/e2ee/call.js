// CallCrypto: the end-to-end encryption of one call, as docs/PROTOCOL.md §9
// describes it (the Go SDK follows the same rules). It owns the device's
// prekey store, one Double Ratchet session per peer, this participant's
// frame-key chain and the validation of the peers' frame keys; the frames
// themselves are encrypted and decrypted in the worker (worker.js), to
// which it posts key updates.
//
// API (the web app codes against this):
//
//   const cc = new CallCrypto({
//     identity,           // PrivateIdentity of this device
//     selfId,             // own participant id (or give it to start())
//     selfIdentityName,   // own identity name (the token's subject)
//     trustStore,         // {get(name) -> {fingerprint, verified} | undefined,
//                         //  set(name, {fingerprint, verified})}, sync or async
//                         //  (truststore.js has memory and localStorage ones)
//     api,                // {fetchBundle(identityName) -> Promise<api.PrekeyBundle JSON>,
//                         //  uploadBundle(api.PrekeyUpload JSON) -> Promise<{remaining}>}
//     sendEnvelope,       // (toParticipantId, Uint8Array) => void (envelope data)
//     onEvent,            // (event) => void, see below
//     onContent,          // optional (participantId, Uint8Array) => void|Promise:
//                         // ratchet plaintexts of other content types
//                         // (messages, receipts: message.js), in the
//                         // order the peer sent them; awaiting
//                         // sendContent to the same peer in it would wait
//                         // for itself
//     now,                // () => ms; default Date.now
//     // optional: suite, switchDelayMs (1000), gracePeriodMs (1000),
//     // prekeyBatch (20), random (n => Uint8Array)
//   });
//   cc.attachWorker(worker);        // transform.js createWorker(); any number
//   await cc.publish();             // BEFORE joining: upload the prekey bundle
//                                   // (a participant joining right after us
//                                   // fetches it) and create the chain
//   await cc.start(participants, selfId); // after joining: those present at
//                                   // the join ([{id, identity}]), own id
//   cc.onJoined(p); cc.onLeft(p);   // roster events, idempotent by id
//   cc.onReconnected();             // the event stream was lost and is back:
//                                   // sends every peer our keys again
//   await cc.onEnvelope(fromId, bytes);
//   cc.onPrekeysLow(remaining);     // prekeys_low event: upload more
//   cc.safetyNumber(participantId)  // '12345 67890 ...' (60 digits) | null
//   cc.fingerprint(participantId)   // 64 hex digits | null
//   cc.acceptIdentityChange(participantId) // after identity_changed: trust the
//                                   // new key and let the call continue with it
//   cc.setVerified(participantId, true)    // the user compared safety numbers
//   cc.reachable()                  // ids of the peers a content can be sent to now
//   await cc.sendContent(participantId, bytes) // encrypts a ratchet plaintext
//                                   // in the peer's session and sends it;
//                                   // false if the peer cannot receive now
//   cc.peers()                      // [{participantId, identity, fingerprint,
//                                   //   safetyNumber, verified, encrypted, blocked, muted}]
//   cc.setMuted(true)               // tells every peer, end to end (§6.6)
//   cc.sendKeyState()               // the key frames are sealed with now
//   cc.receiverKeys()               // [{participantId, key}] installed keys
//   cc.close();
//
// Events given to onEvent ({type, participantId, ...}):
//   peer_encrypted   {participantId, identity, fingerprint, safetyNumber, verified}
//                    both directions keyed with this peer
//   peer_key_changed {participantId, generation, step} a peer's new chain arrived
//   identity_changed {participantId, identity, knownFingerprint, newFingerprint,
//                     wasVerified} the peer presents another key than the one
//                    known for its identity name; nothing is exchanged with
//                    it until acceptIdentityChange
//   send_key         {senderIndex, generation, step} frames now sealed with this key
//   peer_muted       {participantId, muted} a peer's mute state, when first
//                    known and on every change
//   decrypt_stats    {stats} the worker's counters: encrypted,
//                    unencrypted_dropped (no key yet: never sent in clear),
//                    decrypted, and drops by reason: malformed, unknown_kid,
//                    auth_failed, replayed, expired_key, wrong_sender,
//                    awaiting_key, identity_unverified; byParticipant {id: {...}}
//   error            {participantId?, code, message}
//
// The worker gets: {type: 'sendKey', key}, {type: 'recvKey', participantId,
// key}, {type: 'removeParticipant', participantId}, {type: 'blocked',
// participantId, blocked} (see framecrypto.js).

import { compare, randomBytes } from './bytes.js';
import { ProtocolError } from './errors.js';
import {
  CONTENT_FRAME_KEY,
  CONTENT_FRAME_KEY_ACK,
  CONTENT_MUTE_STATE,
  PUBLIC_IDENTITY_OFFSET,
  TYPE_PQXDH_INIT,
  encodeFrameKey,
  encodeFrameKeyAck,
  encodeMuteState,
  parseFrameKey,
  parseFrameKeyAck,
  parseMuteState,
  parsePayload,
} from './envelope.js';
import { DEFAULT_GRACE_PERIOD_MS, DEFAULT_SWITCH_DELAY_MS, FrameReceiver, FrameSender } from './framekeys.js';
import { PUBLIC_IDENTITY_SIZE, combineSafetyHalves, safetyHalf } from './identity.js';
import { DEFAULT_SUITE } from './sframe.js';
import { MemoryTrustStore } from './truststore.js';
import { PrekeyStore, acceptSession, bundleFromJSON, initiateSession, verifyBundle } from './pqxdh.js';

const MAX_HELD_ENVELOPES = 64; // per peer, while an identity change waits or its joined event is due
const MAX_UNKNOWN_SENDERS = 16; // senders not (yet) in the roster whose envelopes are held
const FETCH_RETRIES = [250, 500, 1000, 2000]; // ms between attempts to fetch a bundle
// A newcomer whose session has not arrived after this long gets one from
// us (its own fetch of our bundle may have failed); should both arrive, the
// tie-break of §4.2 keeps one.
const INITIATE_FALLBACK_MS = 4000;
const MAX_KEYS_REMEMBERED = 4; // per peer, replayed to a worker attached late

class Peer {
  constructor(p) {
    this.id = p.id;
    this.identity = p.identity;
    this.session = null;
    this.publicIdentity = null;
    this.safetyNumber = null;
    this.blocked = null; // {pub, knownFingerprint, resume, held: []} while a changed identity waits
    this.keysSent = false; // our keys went out in the current session
    this.haveKeys = false; // a key of theirs is installed
    this.announced = false;
    this.keys = []; // their keys installed, oldest first
    this.queue = Promise.resolve();
    this.gone = false;
    this.fallback = null; // timer: initiate if the newcomer's session does not come
    this.muted = null; // as it last said; null until it did
  }
}

export class CallCrypto {
  constructor(o) {
    for (const k of ['identity', 'api', 'sendEnvelope']) {
      if (!o || o[k] === undefined) throw new TypeError(`CallCrypto: ${k} is required`);
    }
    this.identity = o.identity;
    this.selfId = o.selfId;
    this.selfIdentityName = o.selfIdentityName;
    this.trustStore = o.trustStore || new MemoryTrustStore();
    this.api = o.api;
    this.sendEnvelope = o.sendEnvelope;
    this._onEvent = o.onEvent || (() => {});
    this._onContent = o.onContent || (() => {});
    this.now = o.now || (() => Date.now());
    this.suite = o.suite || DEFAULT_SUITE;
    this.switchDelayMs = o.switchDelayMs || DEFAULT_SWITCH_DELAY_MS;
    this.prekeyBatch = o.prekeyBatch || 20;
    this._random = o.random || randomBytes;
    this._receiver = new FrameReceiver({ gracePeriodMs: o.gracePeriodMs || DEFAULT_GRACE_PERIOD_MS });
    this._peers = new Map();
    this._unknown = new Map(); // participant id -> [envelope bytes]
    this._workers = new Map(); // worker -> message listener
    this._sender = null;
    this._store = null;
    this._switchTimer = null;
    this._closed = false;
    this._muted = false;
    this._selfHalf = null;
    this.lastStats = null;
    let ready;
    this._ready = new Promise((r) => (ready = r));
    this._markReady = ready;
    // Key-schedule operations (advance, rekey, switch) run one at a time.
    this._chain = this._ready;
  }

  _emit(ev) {
    try {
      this._onEvent(ev);
    } catch (e) {
      console.error('CallCrypto onEvent handler:', e);
    }
  }

  _error(participantId, e) {
    this._emit({ type: 'error', participantId, code: (e && e.code) || 'internal', message: String((e && e.message) || e) });
  }

  /** Runs fn after everything queued for peer (one message at a time). */
  _serial(peer, fn) {
    peer.queue = peer.queue
      .then(() => this._ready)
      .then(() => (peer.gone || this._closed ? undefined : fn()))
      .catch((e) => this._error(peer.id, e));
    return peer.queue;
  }

  _chainOp(fn) {
    this._chain = this._chain.then(() => (this._closed ? undefined : fn())).catch((e) => this._error(undefined, e));
    return this._chain;
  }

  /** Uploads the prekey bundle and creates the frame-key chain (posting
   *  its key to the workers). Call it before joining the room, so that a
   *  participant joining right after finds the bundle; start() calls it if
   *  it has not run. Idempotent. */
  publish() {
    if (!this._published) {
      this._published = (async () => {
        this._store = await PrekeyStore.create(this.identity, this._random);
        await this._upload();
        this._sender = FrameSender.create({ suite: this.suite, random: this._random, switchDelayMs: this.switchDelayMs });
        this._selfHalf = safetyHalf(this.identity.public);
        this._postSendKey();
      })();
    }
    return this._published;
  }

  /** Publishes (if not done), then starts a session towards each
   *  participant already present at the join. selfId is this participant's
   *  id, if not given to the constructor. Resolves once the first frame
   *  keys went out (failures are error events). */
  async start(participants = [], selfId = this.selfId) {
    if (selfId === undefined) throw new TypeError('CallCrypto.start: selfId is required');
    this.selfId = selfId;
    try {
      await this.publish();
    } catch (e) {
      // Without a published bundle or a chain nothing can be keyed: stop,
      // and let whatever was queued meanwhile fall through.
      this.close();
      this._markReady();
      throw e;
    }
    const initiating = [];
    for (const p of participants) {
      if (p.id === this.selfId || this._peers.has(p.id)) continue;
      const peer = this._addPeer(p);
      initiating.push(this._serial(peer, () => this._initiate(peer)));
    }
    this._markReady();
    await Promise.all(initiating);
  }

  async _upload() {
    const json = await this._store.uploadJSON(this.prekeyBatch);
    return this.api.uploadBundle(json);
  }

  /** Uploads more one-time prekeys (the prekeys_low event). */
  onPrekeysLow() {
    return this._ready.then(() => this._upload()).catch((e) => this._error(undefined, e));
  }

  _addPeer(p) {
    const peer = new Peer(p);
    this._peers.set(p.id, peer);
    const held = this._unknown.get(p.id);
    if (held) {
      this._unknown.delete(p.id);
      for (const b of held) this._serial(peer, () => this._receive(peer, b));
    }
    return peer;
  }

  /** A participant joined: advance the chain one step (the newcomer cannot
   *  decrypt what was sent before), and wait for its pqxdh-init. */
  onJoined(p) {
    if (this._closed || p.id === this.selfId || this._peers.has(p.id)) return;
    const peer = this._addPeer(p);
    peer.fallback = setTimeout(() => {
      if (!peer.session && !peer.blocked && !peer.gone) this._serial(peer, () => this._initiate(peer));
    }, INITIATE_FALLBACK_MS);
    this._chainOp(async () => {
      try {
        await this._sender.advance();
      } catch (e) {
        if (e.code !== 'chain_exhausted') throw e;
        this._rekey();
        return;
      }
      this._postSendKey();
    });
  }

  /** A participant left: forget its keys and session, and start a fresh
   *  chain that it never receives. */
  onLeft(p) {
    this._unknown.delete(p.id);
    const peer = this._peers.get(p.id);
    if (this._closed || !peer) return;
    peer.gone = true;
    clearTimeout(peer.fallback);
    this._peers.delete(p.id);
    this._receiver.removeParticipant(p.id);
    this._postWorkers({ type: 'removeParticipant', participantId: p.id });
    this._chainOp(() => {
      if (this._sender.forget(p.id)) this._postSendKey();
      this._rekey();
    });
  }

  /** The event stream was lost and is back (§9 step 10): a frame-key
   *  message written to the old one may never have left, so every peer
   *  with a session gets our keys again (the Double Ratchet decrypts past
   *  the lost messages; a key installed twice is acknowledged again). */
  onReconnected() {
    if (this._closed) return;
    for (const peer of this._peers.values()) this._serial(peer, () => this._sendKeys(peer, { again: true }));
  }

  /** Chain operation: fresh chain to every peer keyed so far. */
  _rekey() {
    const targets = [...this._peers.values()].filter((x) => x.keysSent && !x.blocked);
    const k = this._sender.rekey(this.now(), targets.map((x) => x.id));
    if (this._sender.pendingUntil === null) this._postSendKey();
    else this._scheduleSwitch();
    const msg = encodeFrameKey(k);
    for (const x of targets) this._serial(x, () => this._sendContent(x, msg));
  }

  _scheduleSwitch() {
    clearTimeout(this._switchTimer);
    const until = this._sender.pendingUntil;
    if (until === null) return;
    this._switchTimer = setTimeout(() => this.tick(), Math.max(0, until - this.now()) + 5);
  }

  /** Re-evaluates time-based state (the rekey switch-over); called by a
   *  timer, and by tests that drive the clock. */
  tick() {
    return this._chainOp(() => {
      if (this._sender.maybeSwitch(this.now())) this._postSendKey();
      else this._scheduleSwitch();
    });
  }

  _postSendKey() {
    const k = this._sender.current();
    this._postWorkers({ type: 'sendKey', key: k });
    this._emit({ type: 'send_key', senderIndex: k.senderIndex, generation: k.generation, step: k.step });
  }

  _postWorkers(m) {
    for (const w of this._workers.keys()) w.postMessage(m);
  }

  /** Sends keys to worker (a Worker or anything with postMessage and
   *  addEventListener) and listens to its counters. */
  attachWorker(worker) {
    if (this._workers.has(worker)) return;
    const listener = (e) => this._onWorkerMessage(e.data);
    this._workers.set(worker, listener);
    worker.addEventListener('message', listener);
    if (this._sender) worker.postMessage({ type: 'sendKey', key: this._sender.current() });
    for (const { participantId, key } of this.receiverKeys()) worker.postMessage({ type: 'recvKey', participantId, key });
    for (const p of this._peers.values()) if (p.blocked) worker.postMessage({ type: 'blocked', participantId: p.id, blocked: true });
  }

  detachWorker(worker) {
    const l = this._workers.get(worker);
    if (!l) return;
    worker.removeEventListener('message', l);
    this._workers.delete(worker);
  }

  _onWorkerMessage(m) {
    if (!m || typeof m !== 'object') return;
    if (m.type === 'stats') {
      this.lastStats = m.stats;
      this._emit({ type: 'decrypt_stats', stats: m.stats });
    } else if (m.type === 'error') {
      this._emit({ type: 'error', code: 'worker', message: m.message });
    }
  }

  /** Handles an envelope's data from a participant. Resolves when done;
   *  problems become error events. */
  onEnvelope(fromId, bytes) {
    if (this._closed || fromId === this.selfId) return Promise.resolve();
    const peer = this._peers.get(fromId);
    if (!peer) {
      // Not in the roster yet (its joined event is still to come): hold it.
      let held = this._unknown.get(fromId);
      if (!held) {
        if (this._unknown.size >= MAX_UNKNOWN_SENDERS) {
          this._error(fromId, new ProtocolError('invalid', 'envelope from an unknown participant dropped'));
          return Promise.resolve();
        }
        this._unknown.set(fromId, (held = []));
      }
      if (held.length < MAX_HELD_ENVELOPES) held.push(bytes);
      return Promise.resolve();
    }
    return this._serial(peer, () => this._receive(peer, bytes));
  }

  async _receive(peer, bytes) {
    if (peer.blocked) {
      if (peer.blocked.held.length < MAX_HELD_ENVELOPES) peer.blocked.held.push(bytes);
      return;
    }
    const { type } = parsePayload(bytes);
    const s = peer.session;
    if (type === TYPE_PQXDH_INIT) {
      if (s && !s.initiator) {
        try {
          return await this._handleContent(peer, await s.decrypt(bytes, this.now()));
        } catch (e) {
          if (e.code !== 'other_session') throw e;
        }
      } else if (s && s.initiator) {
        // Both initiated (§4.2): the session of the lower identity stays.
        const theirs = bytes.subarray(PUBLIC_IDENTITY_OFFSET, PUBLIC_IDENTITY_OFFSET + PUBLIC_IDENTITY_SIZE);
        if (compare(this.identity.public.bytes, theirs) < 0) return;
      }
      return this._accept(peer, bytes);
    }
    if (!s) throw new ProtocolError('invalid', 'ratchet message without a session');
    await this._handleContent(peer, await s.decrypt(bytes, this.now()));
  }

  async _accept(peer, bytes) {
    const { session, plaintext } = await acceptSession(this._store, bytes, this.now());
    const proceed = async () => {
      peer.session = session;
      peer.keysSent = false;
      await this._handleContent(peer, plaintext);
      await this._sendKeys(peer);
    };
    if (await this._checkIdentity(peer, session.peer, proceed)) await proceed();
  }

  async _initiate(peer) {
    // The peer may have started a session first (its pqxdh-init came in
    // while we were getting ready): that one serves. A peer whose changed
    // identity waits for the user gets nothing more.
    if (peer.session || peer.blocked) return;
    const bundle = bundleFromJSON(await this._fetchBundle(peer));
    const { peer: pub } = await verifyBundle(bundle);
    const proceed = async () => {
      if (peer.session) return;
      peer.session = await initiateSession(this.identity, bundle, this._random);
      peer.keysSent = false;
      await this._sendKeys(peer);
    };
    if (await this._checkIdentity(peer, pub, proceed)) await proceed();
  }

  /** Fetches a peer's bundle, retrying for a few seconds: a participant
   *  that joined just before us may not have published it yet. */
  async _fetchBundle(peer) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.api.fetchBundle(peer.identity);
      } catch (e) {
        if (attempt >= FETCH_RETRIES.length || peer.gone || this._closed) throw e;
        await new Promise((r) => setTimeout(r, FETCH_RETRIES[attempt]));
      }
    }
  }

  /** Compares pub with the trust store's record for the peer's identity
   *  name. First contact is recorded; a change blocks the peer (resume runs
   *  on acceptIdentityChange) and resolves false. */
  async _checkIdentity(peer, pub, resume) {
    const known = await this.trustStore.get(peer.identity);
    if (known && known.fingerprint !== pub.fingerprint) {
      peer.blocked = { pub, knownFingerprint: known.fingerprint, resume, held: [] };
      this._postWorkers({ type: 'blocked', participantId: peer.id, blocked: true });
      this._emit({
        type: 'identity_changed',
        participantId: peer.id,
        identity: peer.identity,
        knownFingerprint: known.fingerprint,
        newFingerprint: pub.fingerprint,
        wasVerified: !!known.verified,
      });
      return false;
    }
    if (!known) await this.trustStore.set(peer.identity, { fingerprint: pub.fingerprint, verified: false });
    this._setPeerIdentity(peer, pub);
    return true;
  }

  _setPeerIdentity(peer, pub) {
    if (peer.publicIdentity && peer.publicIdentity.equals(pub)) return;
    peer.publicIdentity = pub;
    peer.safetyNumber = null;
    peer.safety = Promise.all([this._selfHalf, safetyHalf(pub)]).then(([a, b]) => {
      if (peer.publicIdentity === pub) peer.safetyNumber = combineSafetyHalves(a, b);
    });
  }

  /** Trusts the new identity a peer presented (after identity_changed) and
   *  lets the call continue with it. Returns false if nothing was waiting. */
  async acceptIdentityChange(participantId) {
    const peer = this._peers.get(participantId);
    if (!peer || !peer.blocked) return false;
    const b = peer.blocked;
    await this.trustStore.set(peer.identity, { fingerprint: b.pub.fingerprint, verified: false });
    this._serial(peer, async () => {
      peer.blocked = null;
      this._postWorkers({ type: 'blocked', participantId: peer.id, blocked: false });
      this._setPeerIdentity(peer, b.pub);
      await b.resume();
      for (const bytes of b.held) {
        try {
          await this._receive(peer, bytes);
        } catch (e) {
          this._error(peer.id, e);
        }
      }
    });
    return true;
  }

  /** Records that the user compared the safety number with participantId. */
  async setVerified(participantId, verified = true) {
    const peer = this._peers.get(participantId);
    if (!peer || !peer.publicIdentity || peer.blocked) return false;
    await this.trustStore.set(peer.identity, { fingerprint: peer.publicIdentity.fingerprint, verified: !!verified });
    return true;
  }

  /** Sends our current keys (and a pending one) to peer: once, or again
   *  after a reconnect. */
  async _sendKeys(peer, { again = false } = {}) {
    await this._chain; // take the keys after any advance or rekey in progress
    if (peer.gone || peer.blocked || !peer.session || !peer.session.canEncrypt || (peer.keysSent && !again)) return;
    const keys = this._sender.keys();
    peer.keysSent = true; // from now on, rekeys include this peer
    for (const k of keys) await this._sendContent(peer, encodeFrameKey(k));
    await this._sendContent(peer, encodeMuteState(this._muted));
    await this._maybeAnnounce(peer);
  }

  /** Mutes or unmutes: every keyed peer is told now, the others with
   *  their keys (§6.6). */
  setMuted(muted) {
    muted = !!muted;
    if (this._closed || muted === this._muted) return;
    this._muted = muted;
    for (const peer of this._peers.values()) {
      if (peer.keysSent && !peer.blocked) this._serial(peer, () => this._sendContent(peer, encodeMuteState(this._muted)));
    }
  }

  async _sendContent(peer, content) {
    const payload = await peer.session.encrypt(content);
    if (!peer.gone && !this._closed) this.sendEnvelope(peer.id, payload);
  }

  async _handleContent(peer, pt) {
    if (pt.length === 0) return;
    if (pt[0] === CONTENT_FRAME_KEY) {
      const k = parseFrameKey(pt);
      const ack = await this._receiver.setKey(peer.id, k, this.now());
      const prev = peer.keys[peer.keys.length - 1];
      if (!peer.keys.some((o) => o.senderIndex === k.senderIndex && o.generation === k.generation && o.step === k.step)) {
        peer.keys = peer.keys.filter((o) => o.senderIndex === k.senderIndex);
        peer.keys.push(k);
        if (peer.keys.length > MAX_KEYS_REMEMBERED) peer.keys.shift();
        this._postWorkers({ type: 'recvKey', participantId: peer.id, key: k });
      }
      peer.haveKeys = true;
      if (prev && (prev.generation !== k.generation || prev.senderIndex !== k.senderIndex)) {
        this._emit({ type: 'peer_key_changed', participantId: peer.id, generation: k.generation, step: k.step });
      }
      await this._sendContent(peer, encodeFrameKeyAck(ack));
      await this._maybeAnnounce(peer);
    } else if (pt[0] === CONTENT_FRAME_KEY_ACK) {
      const a = parseFrameKeyAck(pt);
      this._chainOp(() => {
        if (this._sender.acknowledge(peer.id, a)) {
          clearTimeout(this._switchTimer);
          this._postSendKey();
        }
      });
    } else if (pt[0] === CONTENT_MUTE_STATE) {
      const muted = parseMuteState(pt);
      if (peer.muted !== muted) {
        peer.muted = muted;
        this._emit({ type: 'peer_muted', participantId: peer.id, muted });
      }
    } else {
      // Messages and receipts (§11) are the application's; other content
      // types are ignored there (§5.4).
      await this._onContent(peer.id, pt);
    }
  }

  _canSend(peer) {
    return !!(peer && !peer.gone && !peer.blocked && peer.session && peer.session.canEncrypt);
  }

  /** The ids of the peers a content can be sent to now: a session set up
   *  and their identity accepted. */
  reachable() {
    return [...this._peers.values()].filter((p) => this._canSend(p)).map((p) => p.id);
  }

  /** Encrypts a ratchet plaintext (a message or receipt) in a peer's
   *  session, after whatever is queued for that peer, and sends it.
   *  Resolves to whether it went out. */
  async sendContent(participantId, content) {
    const peer = this._peers.get(participantId);
    if (this._closed || !this._canSend(peer)) return false;
    const sent = await this._serial(peer, async () => {
      if (!this._canSend(peer)) return false;
      await this._sendContent(peer, content);
      return true;
    });
    return sent === true;
  }

  async _maybeAnnounce(peer) {
    if (peer.announced || !peer.haveKeys || !peer.keysSent || !peer.publicIdentity) return;
    peer.announced = true;
    await peer.safety;
    const rec = await this.trustStore.get(peer.identity);
    this._emit({
      type: 'peer_encrypted',
      participantId: peer.id,
      identity: peer.identity,
      fingerprint: peer.publicIdentity.fingerprint,
      safetyNumber: peer.safetyNumber,
      verified: !!(rec && rec.verified && rec.fingerprint === peer.publicIdentity.fingerprint),
    });
  }

  /** The safety number with a participant, or null (not known yet). */
  safetyNumber(participantId) {
    const peer = this._peers.get(participantId);
    return (peer && !peer.blocked && peer.safetyNumber) || null;
  }

  /** The fingerprint of a participant's identity, or null. */
  fingerprint(participantId) {
    const peer = this._peers.get(participantId);
    return (peer && peer.publicIdentity && peer.publicIdentity.fingerprint) || null;
  }

  /** A summary per peer, for display. */
  peers() {
    return [...this._peers.values()].map((p) => ({
      participantId: p.id,
      identity: p.identity,
      fingerprint: p.publicIdentity ? p.publicIdentity.fingerprint : null,
      safetyNumber: p.blocked ? null : p.safetyNumber,
      encrypted: p.announced,
      blocked: !!p.blocked,
      muted: !!p.muted,
    }));
  }

  /** The key frames are sealed with now: {suite, senderIndex, generation,
   *  step, baseKey}, or null before start. */
  sendKeyState() {
    return this._sender ? this._sender.current() : null;
  }

  /** The peers' keys installed: [{participantId, key}], oldest first. */
  receiverKeys() {
    const out = [];
    for (const p of this._peers.values()) for (const key of p.keys) out.push({ participantId: p.id, key });
    return out;
  }

  /** Zeroes the keys and stops. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._switchTimer);
    if (this._sender) this._sender.close();
    if (this._store) this._store.close();
    this._receiver.close();
    for (const w of [...this._workers.keys()]) this.detachWorker(w);
    for (const p of this._peers.values()) {
      p.gone = true;
      clearTimeout(p.fallback);
    }
    this._peers.clear();
    this._unknown.clear();
  }
}
