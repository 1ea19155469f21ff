// One participation in a room: the peer connection to the relay, the join,
// the event stream and renegotiation (docs/API.md). It knows nothing of
// keys; encryption is attached through the frame transforms it is given.

import { api } from './api.js';

const GATHER_TIMEOUT_MS = 5000;
/** Reconnection delays of a lost event stream; the server keeps the
 *  participant for its drop timeout (10 s by default). */
const RECONNECT_DELAYS_MS = [250, 1000, 2000, 4000];
/** ICE restart (docs/API.md): a path disconnected this long, or failed, is
 *  restarted, then again every ICE_RESTART_RETRY_MS while it is not back;
 *  one not back ICE_GIVE_UP_MS after it went down ends the session
 *  ('ice_failed'), which the page then rejoins. An offer not answered
 *  within ICE_ANSWER_TIMEOUT_MS is forgotten (its stream may have died). */
const ICE_RESTART_GRACE_MS = 1500;
const ICE_RESTART_RETRY_MS = 2000;
const ICE_GIVE_UP_MS = 15000;
const ICE_ANSWER_TIMEOUT_MS = 5000;
/** Incoming audio that stops for MEDIA_SILENCE_MS while others are in the
 *  call means a dead path seconds before the browser calls it
 *  disconnected; it is checked every MEDIA_POLL_MS. */
const MEDIA_SILENCE_MS = 1500;
const MEDIA_POLL_MS = 500;

function b64encode(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function b64decode(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Resolves once ICE gathering is complete, or after a timeout: whatever
 *  was not gathered by then is trickled on the event stream. */
function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== 'complete') return;
      pc.removeEventListener('icegatheringstatechange', done);
      resolve();
    };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, GATHER_TIMEOUT_MS);
  });
}

/** The parts of an SDP: the session part, then each m-section with its
 *  mid and the first SSRC it signals (a number, or undefined). */
function mediaSections(sdp) {
  return sdp.split(/(?=\r?\nm=)/).map((text) => {
    const mid = text.match(/\na=mid:(\S+)/);
    const ssrc = text.match(/\na=ssrc:(\d+) /);
    return { text, mid: mid ? mid[1] : undefined, ssrc: ssrc ? Number(ssrc[1]) : undefined };
  });
}

/** Opus only, so the browser neither offers nor accepts RED (or anything
 *  but the codec the frames are encrypted for). */
function preferOpus(transceiver) {
  if (!transceiver.setCodecPreferences || !RTCRtpReceiver.getCapabilities) return;
  const caps = RTCRtpReceiver.getCapabilities('audio');
  const opus = caps ? caps.codecs.filter((c) => c.mimeType.toLowerCase() === 'audio/opus') : [];
  if (opus.length) transceiver.setCodecPreferences(opus);
}

/**
 * CallSession joins one room and runs it until it ends.
 *
 * Events (CustomEvent detail):
 *  - 'welcome' {participantId, participants, reconnected, door, knocks}:
 *    reconnected is true for the welcome of a stream that replaces a lost
 *    one; door is who lets guests in, knocks the guests waiting that this
 *    participant may answer
 *  - 'joined' {participant, replaces}, 'left' {participant, reason}: reason
 *    'absent' for someone the welcome after a reconnect no longer lists
 *    (its own 'left' was lost with the old stream); replaces is the
 *    participant of the same identity this one took over
 *  - 'knock' {knock}: a guest at the door, or what became of it
 *  - 'door' {door, by}: the door changed
 *  - 'speaking' {participantId, speaking}
 *  - 'track' {participantId, stream, receiver}
 *  - 'envelope' {from, data: Uint8Array}
 *  - 'prekeys_low' {remaining}
 *  - 'servererror' {code, message, ref}
 *  - 'connection' {state}: the peer connection's state, or 'reconnecting'
 *    while the event stream is being reconnected
 *  - 'icerestart' {}: an ICE restart offer went out
 *  - 'closed' {reason, retryAfterMs, by, at}: the session is over ('left',
 *    'room_ended', 'replaced', 'moved_to_another_device', 'dropped',
 *    'ice_failed', 'server_shutdown', 'disconnected', or 'session_lost':
 *    the event stream's reconnect was refused, the server no longer knows
 *    the participant); retryAfterMs is the server's hint of when to join
 *    again (server_shutdown), or 0; by and at (unix seconds) say who
 *    ended the call and when, for 'room_ended'
 */
export class CallSession extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.room
   * @param {string} o.token
   * @param {MediaStreamTrack} o.track  the microphone
   * @param {object} o.transforms  {legacy: boolean, sender(rtpSender), receiver(rtpReceiver)}:
   *   legacy means createEncodedStreams, which needs the peer connection
   *   created with encodedInsertableStreams.
   * @param {string} [o.replaces]  this device's earlier participant in the
   *   room, which the join takes over (a rejoin, not a device switch)
   */
  constructor({ room, token, track, transforms, replaces }) {
    super();
    this.room = room;
    this.token = token;
    this.replaces = replaces || '';
    this.track = track;
    this.transforms = transforms;
    this.participantId = '';
    this.session = '';
    this.pc = null;
    this.ws = null;
    this.closed = false;
    this._negotiation = Promise.resolve();
    this._receivers = new Map(); // participant id -> RTCRtpReceiver
    this._transformed = new WeakSet();
    this._nextEnvelopeId = 1;
    this._eventsPath = '';
    this._reconnects = 0;
    this._roster = null; // participant id -> participant, from the event stream; null before the first welcome
    this._mlines = new Map(); // mid -> {ssrc, active} in the last offer applied
    this._restartOffer = null; // our ICE restart offer awaiting its answer
    this._iceTimer = 0;
    this._iceDown = 0; // when the media path went down; 0 while up
    this._mediaTimer = 0;
    this._rtpPackets = 0; // audio packets received, all tracks
    this._rtpAt = 0; // when that count last grew; 0 while none is expected
    this._silent = false; // audio stopped: the path is taken for down
    this.iceRestarts = 0;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Joins: ICE servers, peer connection, offer, join. Resolves with the
   *  join response; call openEvents() next, once ready for the events. */
  async start() {
    const { ice_servers: iceServers } = await api.iceServers(this.token);
    const config = { iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' };
    if (this.transforms.legacy) config.encodedInsertableStreams = true;
    const pc = new RTCPeerConnection(config);
    this.pc = pc;

    const tr = pc.addTransceiver(this.track, { direction: 'sendrecv' });
    preferOpus(tr);
    // Before any frame is encoded: nothing leaves unencrypted.
    this.transforms.sender(tr.sender);
    this._transformed.add(tr.sender);

    pc.addEventListener('track', (e) => this._onTrack(e));
    pc.addEventListener('icecandidate', (e) => this._onCandidate(e));
    pc.addEventListener('connectionstatechange', () => {
      this._emit('connection', { state: pc.connectionState });
      // A failed ICE path is restarted (_watchIce); DTLS failing over a
      // working one cannot be.
      if (pc.connectionState === 'failed' && !this._iceDown) this._finish('ice_failed');
    });
    pc.addEventListener('iceconnectionstatechange', () => this._watchIce());

    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const jr = await api.join(this.room, this.token, pc.localDescription.sdp, this.replaces);
    this.participantId = jr.participant_id;
    this.session = jr.session;
    this._eventsPath = jr.events_url;
    await pc.setRemoteDescription({ type: 'answer', sdp: jr.sdp });
    this._mediaTimer = setInterval(() => this._watchMedia(), MEDIA_POLL_MS);
    return jr;
  }

  /** Opens the event stream; 'welcome' comes first. */
  openEvents() {
    // The node that answered the join, which may be another than this
    // page's in a cluster.
    const ws = new WebSocket(api.eventsURL(this.room, this._eventsPath, this.session));
    this.ws = ws;
    ws.addEventListener('message', (e) => this._onMessage(e.data));
    ws.addEventListener('close', () => {
      if (this.ws !== ws || this.closed) return;
      // Lost without a "closed" message: the network, or a server that
      // crashed, ended it. Reconnect to the same participant while the
      // server keeps it.
      const delay = RECONNECT_DELAYS_MS[this._reconnects++];
      if (delay === undefined) {
        this._finish('disconnected');
        return;
      }
      this._emit('connection', { state: 'reconnecting' });
      setTimeout(async () => {
        if (this.closed) return;
        if (!(await this._sessionKnown())) {
          this._finish('session_lost');
          return;
        }
        if (!this.closed) this.openEvents();
      }, delay);
    });
  }

  /** Whether the server still knows this participant. A browser does not
   *  tell why a WebSocket failed to open, so the stream's URL is asked
   *  over plain HTTP: 404 (or 401) before the upgrade means a server that
   *  lost or never had the session, a new process after a crash; a known
   *  session gets 426 (no upgrade asked). An unreachable server may be
   *  the network's fault: known. */
  async _sessionKnown() {
    try {
      const r = await fetch(`${this._eventsPath}?session=${encodeURIComponent(this.session)}`, {
        cache: 'no-store',
        credentials: 'omit',
        signal: AbortSignal.timeout(5000),
      });
      return r.status !== 404 && r.status !== 401;
    } catch {
      return true;
    }
  }

  _send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  /** Sends opaque bytes to another participant; returns the envelope id. */
  sendEnvelope(to, data) {
    const id = this._nextEnvelopeId++;
    this._send({ type: 'envelope', to, data: b64encode(data), id });
    return id;
  }

  _onMessage(raw) {
    if (this.closed) return;
    let m;
    try {
      m = JSON.parse(raw);
    } catch {
      return;
    }
    switch (m.type) {
      case 'welcome': {
        this._reconnects = 0;
        // An answer written to a lost stream never comes: offer again.
        this._restartOffer = null;
        this._watchIce();
        const participants = (m.participants || []).filter((p) => p.id !== this.participantId);
        const reconnected = this._roster !== null;
        if (reconnected) {
          // Messages written to the lost stream never arrived, a "left"
          // among them: whoever this welcome no longer lists has left.
          const present = new Set(participants.map((p) => p.id));
          for (const p of [...this._roster.values()]) if (!present.has(p.id)) this._left(p, 'absent');
        }
        this._roster = new Map(participants.map((p) => [p.id, p]));
        this._emit('welcome', { participantId: m.participant_id, participants, reconnected, door: m.door || 'host', knocks: m.knocks || [] });
        break;
      }
      case 'joined':
        if (this._roster) this._roster.set(m.participant.id, m.participant);
        this._emit('joined', { participant: m.participant, replaces: m.replaces || '' });
        break;
      case 'knock':
        if (m.knock) this._emit('knock', { knock: m.knock });
        break;
      case 'door':
        this._emit('door', { door: m.door, by: m.by || '' });
        break;
      case 'left':
        this._left(m.participant, m.reason);
        break;
      case 'speaking':
        this._emit('speaking', { participantId: m.participant_id, speaking: m.speaking });
        break;
      case 'offer':
        this._negotiate(m.sdp);
        break;
      case 'answer':
        this._restartAnswered(m.sdp);
        break;
      case 'candidate':
        if (this.pc) this.pc.addIceCandidate(m.candidate).catch((err) => console.warn('server candidate:', err));
        break;
      case 'envelope': {
        let data;
        try {
          data = b64decode(m.data || '');
        } catch {
          return;
        }
        this._emit('envelope', { from: m.from, data, id: m.id || 0 });
        break;
      }
      case 'prekeys_low':
        this._emit('prekeys_low', { remaining: m.remaining });
        break;
      case 'error': {
        const code = m.error && m.error.code;
        // Our restart offer crossed one of the server's, or was refused:
        // forget it; _watchIce offers again while the path is down.
        if (this._restartOffer && (code === 'offer_collision' || code === 'negotiation_failed')) this._restartOffer = null;
        this._emit('servererror', { code, message: m.error && m.error.message, ref: m.ref || 0 });
        break;
      }
      case 'closed':
        this._finish(m.reason || 'disconnected', { retryAfterMs: m.retry_after_ms, by: m.by || '', at: m.at || 0 });
        break;
      default:
      // Unknown types are ignored, as the API asks.
    }
  }

  _left(participant, reason) {
    // Their audio stops: no sign of a dead path until audio flows again.
    this._rtpAt = 0;
    if (this._roster) this._roster.delete(participant.id);
    this._receivers.delete(participant.id);
    this._emit('left', { participant, reason });
  }

  /** Applies a server offer and answers it, one at a time. */
  _negotiate(sdp) {
    this._negotiation = this._negotiation.then(async () => {
      if (this.closed) return;
      try {
        const copy = this._reactivatedCopy(sdp);
        if (copy) {
          try {
            await this.pc.setRemoteDescription({ type: 'offer', sdp: copy });
            await this.pc.setLocalDescription(await this.pc.createAnswer());
          } catch (err) {
            console.error('renegotiation: setting up a reused receiver anew failed:', err);
          }
        }
        await this.pc.setRemoteDescription({ type: 'offer', sdp });
        this._noteMediaSections(sdp);
        for (const t of this.pc.getTransceivers()) {
          if (t.receiver && !this._transformed.has(t.receiver)) preferOpus(t);
        }
        await this.pc.setLocalDescription(await this.pc.createAnswer());
        this._send({ type: 'answer', sdp: this.pc.localDescription.sdp });
      } catch (err) {
        console.error('renegotiation failed:', err);
      }
    });
  }

  /** Chromium sets a receiver up anew, frame transform included, only
   *  when its SSRC changes: an m-line that comes back from inactive with
   *  the SSRC it had before (the relay reuses transceivers so) would feed
   *  its frames to the decoder without decrypting them, or play what a
   *  hostile relay sends in the clear. For such an offer this returns a
   *  copy with other SSRCs on those m-lines, to apply and answer locally
   *  first; otherwise null. */
  _reactivatedCopy(sdp) {
    let changed = false;
    const text = mediaSections(sdp).map((m) => {
      const last = this._mlines.get(m.mid);
      if (m.ssrc === undefined || !last || last.active || last.ssrc !== m.ssrc) return m.text;
      changed = true;
      let other = (m.ssrc + 1) >>> 0;
      while (sdp.includes(`a=ssrc:${other} `)) other = (other + 1) >>> 0;
      return m.text.replaceAll(`a=ssrc:${m.ssrc} `, `a=ssrc:${other} `);
    });
    return changed ? text.join('') : null;
  }

  /** Remembers each m-line's SSRC (also while inactive) and whether it
   *  carries a track, after an offer is applied. */
  _noteMediaSections(sdp) {
    for (const m of mediaSections(sdp)) {
      if (m.mid === undefined) continue;
      const last = this._mlines.get(m.mid);
      const active = m.ssrc !== undefined;
      this._mlines.set(m.mid, { ssrc: active ? m.ssrc : last && last.ssrc, active });
    }
  }

  /** Restarts ICE when the media path fails: disconnected for
   *  ICE_RESTART_GRACE_MS, failed, or silent (_watchMedia); again every
   *  ICE_RESTART_RETRY_MS until it is back, and gives up after
   *  ICE_GIVE_UP_MS. Called on every ICE state change, by _watchMedia and
   *  by its own timer. */
  _watchIce() {
    const pc = this.pc;
    if (this.closed || !pc) return;
    clearTimeout(this._iceTimer);
    const state = pc.iceConnectionState;
    if ((state === 'connected' || state === 'completed') && !this._silent) {
      if (this._iceDown) console.info(`media path back after ${Date.now() - this._iceDown} ms`);
      this._iceDown = 0;
      return;
    }
    // Still setting up (the first time), or a restart under way.
    if ((state === 'new' || state === 'checking') && !this._iceDown) return;
    const now = Date.now();
    if (!this._iceDown) {
      this._iceDown = this._silent ? this._rtpAt : now;
      if (state === 'disconnected' && !this._silent) {
        this._iceTimer = setTimeout(() => this._watchIce(), ICE_RESTART_GRACE_MS);
        return;
      }
    }
    if (now - this._iceDown > ICE_GIVE_UP_MS) {
      this._finish('ice_failed');
      return;
    }
    if (now - this._iceDown >= ICE_RESTART_GRACE_MS || state === 'failed') this._restartIce();
    this._iceTimer = setTimeout(() => this._watchIce(), ICE_RESTART_RETRY_MS);
  }

  /** Counts the audio packets received: when they stop for
   *  MEDIA_SILENCE_MS after flowing, the path is taken for down
   *  (_watchIce restarts it) until they flow again. */
  async _watchMedia() {
    let packets = 0;
    try {
      for (const s of (await this.pc.getStats()).values()) {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') packets += s.packetsReceived || 0;
      }
    } catch {
      return; // closed meanwhile
    }
    if (this.closed) return;
    const now = Date.now();
    if (packets !== this._rtpPackets) {
      this._rtpPackets = packets;
      this._rtpAt = now;
      if (this._silent) {
        this._silent = false;
        this._watchIce();
      }
    } else if (!this._silent && this._rtpAt && now - this._rtpAt > MEDIA_SILENCE_MS) {
      console.info(`no audio for ${now - this._rtpAt} ms`);
      this._silent = true;
      this._watchIce();
    }
  }

  /** Sends the relay an offer with new ICE credentials, applied only once
   *  its answer comes: meanwhile the connection stays stable, so an offer
   *  of the server's that crosses it can still be answered. Not while the
   *  event stream is down: the next try goes once it is back. */
  _restartIce() {
    this._negotiation = this._negotiation.then(async () => {
      const pending = this._restartOffer;
      if (this.closed || !this.ws || this.ws.readyState !== WebSocket.OPEN || this.pc.signalingState !== 'stable') return;
      if (pending && Date.now() - pending.at < ICE_ANSWER_TIMEOUT_MS) return;
      try {
        const offer = await this.pc.createOffer({ iceRestart: true });
        this._restartOffer = { offer, at: Date.now() };
        this.iceRestarts++;
        console.info('media path lost; restarting ICE');
        this._send({ type: 'offer', sdp: offer.sdp });
        this._emit('icerestart', {});
      } catch (err) {
        console.warn('ICE restart offer:', err);
      }
    });
  }

  /** Applies the relay's answer to our pending ICE restart offer. */
  _restartAnswered(sdp) {
    this._negotiation = this._negotiation.then(async () => {
      const pending = this._restartOffer;
      this._restartOffer = null;
      if (this.closed || !pending) return;
      try {
        await this.pc.setLocalDescription(pending.offer);
        await this.pc.setRemoteDescription({ type: 'answer', sdp });
        // From now on the ICE state tells whether the new path works;
        // silence again means something only after audio flowed again
        // (the others may have stopped sending, or frozen).
        this._silent = false;
        this._rtpAt = 0;
      } catch (err) {
        console.warn('ICE restart answer:', err);
      }
    });
  }

  _onTrack(e) {
    const stream = e.streams[0];
    if (!stream) return;
    const participantId = stream.id;
    // A transceiver may be reused for another publisher: its receiver is
    // transformed once (createEncodedStreams allows no more) and relabeled
    // here, since the worker plays only frames sealed with the keys of the
    // track's publisher.
    this.transforms.receiver(e.receiver, participantId);
    this._transformed.add(e.receiver);
    this._receivers.set(participantId, e.receiver);
    this._emit('track', { participantId, stream, receiver: e.receiver });
  }

  _onCandidate(e) {
    // Candidates found after the offer went out; the end-of-candidates
    // marker (null) is sent as an empty candidate.
    if (!this.session) return;
    this._send({ type: 'candidate', candidate: e.candidate ? e.candidate.toJSON() : { candidate: '' } });
  }

  setMuted(muted) {
    this.track.enabled = !muted;
  }

  /** Audio received per publisher: {participantId: {energy, packets, bytes}}
   *  from inbound-rtp statistics. */
  async inboundAudio() {
    const out = {};
    for (const [id, receiver] of this._receivers) {
      const report = await receiver.getStats();
      for (const s of report.values()) {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
          out[id] = {
            energy: s.totalAudioEnergy || 0,
            packets: s.packetsReceived || 0,
            bytes: s.bytesReceived || 0,
            concealed: s.concealedSamples || 0,
          };
        }
      }
    }
    return out;
  }

  /** The media path: the selected candidate pair's local and remote
   *  addresses, as 'ip:port' ('[ip]:port' for IPv6), and every local UDP
   *  candidate's (locals), or null before there is one. */
  async mediaPath() {
    if (!this.pc) return null;
    const report = await this.pc.getStats();
    const addr = (c) => (c.address.includes(':') ? `[${c.address}]:${c.port}` : `${c.address}:${c.port}`);
    const locals = [...report.values()].filter((s) => s.type === 'local-candidate' && s.protocol === 'udp').map(addr);
    for (const t of report.values()) {
      const pair = t.type === 'transport' && report.get(t.selectedCandidatePairId);
      const l = pair && report.get(pair.localCandidateId);
      const r = pair && report.get(pair.remoteCandidateId);
      if (l && r) return { local: addr(l), remote: addr(r), locals };
    }
    return null;
  }

  /** The codecs in use on the peer connection, e.g. ['audio/opus']. */
  async codecs() {
    if (!this.pc) return [];
    const report = await this.pc.getStats();
    const mimes = new Set();
    for (const s of report.values()) if (s.type === 'codec') mimes.add(s.mimeType);
    return [...mimes];
  }

  /** Leaves the room (tells the server) and releases everything. */
  async leave() {
    if (this.closed) return;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this._send({ type: 'leave' });
    } else if (this.participantId) {
      try {
        await api.leave(this.room, this.participantId, this.session);
      } catch (err) {
        console.warn('leave:', err);
      }
    }
    this._finish('left');
  }

  _finish(reason, { retryAfterMs = 0, by = '', at = 0 } = {}) {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this._iceTimer);
    clearInterval(this._mediaTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      // Give a just-sent "leave" a moment to go out before closing.
      setTimeout(() => ws.close(1000), 200);
    }
    if (this.pc) this.pc.close();
    this._emit('closed', { reason, retryAfterMs: retryAfterMs > 0 ? retryAfterMs : 0, by, at });
  }
}
