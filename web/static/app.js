// The Sotto page: start a private call or answer an invite, then run the
// call with end-to-end encryption (e2ee/call.js) over the relay
// (session.js). No framework; the DOM is in index.html.

import { api, describeError, ApiError, E2EE } from './api.js';
import { Contacts, displayName, identityTag } from './contacts.js';
import { CallSession } from './session.js';
import { Chat } from './chat.js';
import { CallCrypto } from './e2ee/call.js';
import { attachReceiver, attachSender, createWorker, hasScriptTransform } from './e2ee/transform.js';
import { StorageTrustStore, loadOrCreateIdentity } from './e2ee/truststore.js';

/** Seconds a peer may stay without keys before the page says so. */
const KEY_TIMEOUT_S = 20;
/** Receive-side drop reasons that mean "this peer's audio cannot be
 *  decrypted" (awaiting_key is normal until its key arrives). */
const FAILURE_REASONS = ['auth_failed', 'malformed', 'unknown_kid', 'replayed', 'expired_key', 'wrong_sender'];

const $ = (id) => document.getElementById(id);

const app = {
  screen: '',
  role: '', // 'creator' | 'invitee'
  room: '',
  token: '',
  identity: '',
  invite: '',
  inviter: '',
  mic: null,
  session: null,
  crypto: null,
  chat: null, // the message panel of the call
  worker: null,
  contacts: new Contacts(localStorage),
  selfId: '',
  participants: new Map(), // id -> Person
  audio: new Map(), // participant id -> HTMLAudioElement
  decrypt: null, // last decrypt_stats
  closedReason: '',
  status: '',
  keyTimer: 0,
  abandoned: false, // the session is being left because joining failed
  unloading: false, // the page is going away (reload, close)
  inviteExpires: 0,
};

// The call this tab is in, kept in sessionStorage (this tab only, gone when
// it closes) so that a reload or a lost connection can rejoin it.
const CALL_KEY = 'sotto.call';

function rememberCall() {
  const { role, room, token, identity, invite, inviteExpires, inviter } = app;
  sessionStorage.setItem(CALL_KEY, JSON.stringify({ role, room, token, identity, invite, inviteExpires, inviter }));
}

function forgetCall() {
  sessionStorage.removeItem(CALL_KEY);
}

function rememberedCall() {
  try {
    const c = JSON.parse(sessionStorage.getItem(CALL_KEY) || 'null');
    return c && typeof c.room === 'string' && typeof c.token === 'string' ? c : null;
  } catch {
    return null;
  }
}

/** One row of the participants list. */
class Person {
  constructor(id, identity, self) {
    this.id = id;
    this.identity = identity;
    this.self = self;
    this.speaking = false;
    this.encrypted = false;
    this.plain = false; // declared no encryption we speak: cannot be heard
    this.safetyNumber = '';
    this.fingerprint = '';
    this.verified = false;
    this.changed = null; // {text, accept: bool}
    this.failing = '';
    this.since = Date.now();
    this.el = null;
  }
}

// ---- screens and messages ----

function show(screen) {
  app.screen = screen;
  for (const s of document.querySelectorAll('.screen')) s.hidden = s.id !== `screen-${screen}`;
}

function banner(text) {
  const b = $('banner');
  b.textContent = text || '';
  b.hidden = !text;
}

function message(title, text) {
  $('message-title').textContent = title;
  $('message-text').textContent = text;
  $('rejoin-button').hidden = !rememberedCall();
  show('message');
}

/** Keeps what the server accepts in a name: letters, digits, . _ - */
function cleanName(raw) {
  return raw.trim().replace(/\s+/g, '_').replace(/[^A-Za-z0-9._-]/g, '').slice(0, 40);
}

function busy(button, on) {
  button.disabled = on;
}

// ---- start: a new private call ----

async function startCall(e) {
  e.preventDefault();
  const name = cleanName($('start-name').value);
  if (!name) {
    banner('Please enter a name (letters, digits, dots, dashes or underscores).');
    return;
  }
  banner('');
  busy($('start-button'), true);
  try {
    await openMicrophone();
    const call = await api.createCall(name);
    app.role = 'creator';
    app.room = call.room;
    app.token = call.token;
    app.identity = call.identity;
    app.invite = call.invite;
    app.inviteExpires = call.invite_expires;
    await joinCall();
  } catch (err) {
    fail(err);
  } finally {
    busy($('start-button'), false);
  }
}

// ---- invitee: inspect, accept or decline ----

function inviteFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  return params.get('invite') || '';
}

async function showInvite(invite) {
  app.invite = invite;
  try {
    const info = await api.inspectInvite(invite);
    app.inviter = info.inviter;
    $('invite-from').textContent = displayName(info.inviter);
    $('invite-from').title = info.inviter;
    $('invite-title').textContent = `${displayName(info.inviter)} invites you to a private call`;
    $('invite-expiry').textContent = `This invitation is valid until ${new Date(info.expires * 1000).toLocaleString()}.`;
    show('invite');
    $('invite-name').focus();
  } catch (err) {
    if (err instanceof ApiError) {
      message(err.code === 'call_ended' ? 'This call has ended' : 'This invite link cannot be used', describeError(err));
    } else {
      show('start');
      banner(describeError(err));
    }
  }
}

async function acceptInvite(e) {
  e.preventDefault();
  const name = cleanName($('invite-name').value);
  if (!name) {
    banner('Please enter a name (letters, digits, dots, dashes or underscores).');
    return;
  }
  banner('');
  busy($('accept-button'), true);
  try {
    await openMicrophone();
    const r = await api.redeemInvite(app.invite, name);
    app.role = 'invitee';
    app.room = r.room;
    app.token = r.token;
    app.identity = r.identity;
    app.inviter = r.inviter;
    await joinCall();
  } catch (err) {
    fail(err);
  } finally {
    busy($('accept-button'), false);
  }
}

function declineInvite() {
  // Nothing is sent: the server and the inviter never learn of it.
  history.replaceState(null, '', '/');
  banner('');
  message('Invitation declined', `You declined ${displayName(app.inviter)}'s invitation. Nobody was notified.`);
}

// ---- the call ----

async function rejoin() {
  const c = rememberedCall();
  if (!c) return;
  Object.assign(app, c);
  banner('');
  busy($('rejoin-button'), true);
  try {
    await openMicrophone();
    await joinCall();
  } catch (err) {
    fail(err);
  } finally {
    busy($('rejoin-button'), false);
  }
}

async function openMicrophone() {
  if (app.mic) return;
  if (!navigator.mediaDevices || !window.RTCPeerConnection) {
    throw new Error('This browser cannot make calls here. Use a current Chromium, Chrome, Edge or Firefox, over https or on localhost.');
  }
  app.mic = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    video: false,
  });
}

/** Joins app.room with app.token, creator controls included. */
async function joinCall() {
  const creator = app.role === 'creator';
  $('invite-panel').hidden = !creator;
  $('end-button').hidden = !creator;
  if (creator) {
    $('invite-link').value = `${location.origin}/join#invite=${encodeURIComponent(app.invite)}`;
    $('invite-panel-expiry').textContent = new Date(app.inviteExpires * 1000).toLocaleTimeString();
  }
  $('mute-button').setAttribute('aria-pressed', 'false');
  $('mute-button').textContent = 'Mute';
  app.closedReason = '';
  const device = await loadOrCreateIdentity(localStorage, 'device');
  app.worker = createWorker();
  app.worker.addEventListener('error', (e) => console.error('e2ee worker:', e.message));
  const track = app.mic.getAudioTracks()[0];
  const session = new CallSession({
    room: app.room,
    token: app.token,
    track,
    transforms: {
      legacy: !hasScriptTransform(),
      sender: (s) => attachSender(s, app.worker),
      receiver: (r, participantId) => attachReceiver(r, app.worker, participantId),
    },
  });
  app.session = session;
  session.addEventListener('track', (e) => playRemote(e.detail.participantId, e.detail.stream));
  session.addEventListener('speaking', (e) => setSpeaking(e.detail.participantId, e.detail.speaking));
  session.addEventListener('connection', (e) => setStatus(connectionText(e.detail.state)));
  session.addEventListener('closed', (e) => ended(e.detail.reason));
  session.addEventListener('servererror', (e) => console.warn('server:', e.detail.code, e.detail.message));

  setStatus('connecting…');
  const jr = await session.start();
  app.selfId = jr.participant_id;
  app.chat = new Chat({
    room: app.room,
    session: () => session.session,
    selfId: jr.participant_id,
    nameOf: (id) => {
      const p = app.participants.get(id);
      return p ? displayName(p.identity) : 'someone who left';
    },
    verifiedOf: (id) => {
      const p = app.participants.get(id);
      return !!(p && p.verified);
    },
  });
  const cc = new CallCrypto({
    identity: device,
    selfId: jr.participant_id,
    selfIdentityName: jr.identity,
    trustStore: new StorageTrustStore(localStorage, 'device'),
    api: {
      fetchBundle: (identity) => fetchBundle(identity),
      uploadBundle: (upload) => api.uploadPrekeys(app.token, upload),
    },
    sendEnvelope: (to, data) => session.sendEnvelope(to, data),
    onEvent: onCryptoEvent,
    onContent: (from, content) => app.chat && app.chat.onContent(from, content),
  });
  app.crypto = cc;
  cc.attachWorker(app.worker);
  app.chat.attach(cc);

  let started = false;
  session.addEventListener('welcome', (e) => {
    const all = e.detail.participants.filter((p) => p.id !== app.selfId);
    for (const p of all) addPerson(p);
    // Keys are exchanged with those who encrypt; the others are shown as such.
    const others = all.filter((p) => p.e2ee === E2EE);
    if (!started) {
      started = true;
      cc.start(others).catch((err) => console.error('e2ee start:', err));
    } else {
      // A stream that replaces a lost one; whoever it no longer lists has
      // already been reported left by the session.
      for (const p of others) cc.onJoined(p);
      cc.onReconnected();
    }
  });
  session.addEventListener('joined', (e) => {
    addPerson(e.detail.participant);
    if (e.detail.participant.e2ee === E2EE) cc.onJoined(e.detail.participant);
  });
  session.addEventListener('left', (e) => {
    cc.onLeft(e.detail.participant);
    removePerson(e.detail.participant.id);
  });
  session.addEventListener('envelope', (e) => cc.onEnvelope(e.detail.from, e.detail.data));
  session.addEventListener('left', (e) => app.chat && app.chat.forget(e.detail.participant.id));
  session.addEventListener('prekeys_low', (e) => cc.onPrekeysLow(e.detail.remaining));

  const me = new Person(jr.participant_id, jr.identity, true);
  app.participants.set(me.id, me);
  render(me);
  show('call');
  rememberCall();
  session.openEvents();
  app.keyTimer = setInterval(checkKeys, 1000);
}

/** A peer's prekey bundle. A peer that joined a moment ago may not have
 *  uploaded it yet: not_found is retried for a few seconds. */
async function fetchBundle(identity) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await api.fetchPrekeys(app.token, identity);
    } catch (err) {
      if (!(err instanceof ApiError) || err.code !== 'not_found' || attempt >= 10) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

function connectionText(state) {
  switch (state) {
    case 'connected':
      return 'connected';
    case 'disconnected':
      return 'reconnecting…';
    case 'failed':
      return 'connection failed';
    default:
      return `${state}…`;
  }
}

function setStatus(text) {
  app.status = text;
  $('call-status').textContent = text;
}

function addPerson(p) {
  if (p.id === app.selfId || app.participants.has(p.id)) return;
  const person = new Person(p.id, p.identity, false);
  person.plain = p.e2ee !== E2EE;
  app.participants.set(p.id, person);
  render(person);
}

function removePerson(id) {
  const p = app.participants.get(id);
  if (!p) return;
  app.participants.delete(id);
  if (p.el) p.el.remove();
  const a = app.audio.get(id);
  if (a) {
    a.srcObject = null;
    a.remove();
    app.audio.delete(id);
  }
  refreshBanner();
}

function playRemote(participantId, stream) {
  let a = app.audio.get(participantId);
  if (!a) {
    a = document.createElement('audio');
    a.autoplay = true;
    a.hidden = true;
    document.body.append(a);
    app.audio.set(participantId, a);
  }
  if (a.srcObject !== stream) a.srcObject = stream;
  a.play().catch((err) => console.warn('play audio:', err.message));
}

function setSpeaking(id, speaking) {
  const p = app.participants.get(id);
  if (!p) return;
  p.speaking = speaking;
  render(p);
}

function onCryptoEvent(ev) {
  const p = app.participants.get(ev.participantId);
  switch (ev.type) {
    case 'peer_encrypted': {
      if (!p) return;
      p.encrypted = true;
      p.failing = '';
      p.fingerprint = ev.fingerprint;
      p.safetyNumber = ev.safetyNumber || '';
      p.verified = app.contacts.isVerified(ev.fingerprint);
      const before = app.contacts.meet(displayName(p.identity), ev.fingerprint);
      if (before) {
        p.changed = {
          accept: false,
          text: before.verified
            ? `The safety number of “${displayName(p.identity)}” is not the one you verified in an earlier call. Unless they use a new device or browser, someone may be impersonating them. Compare safety numbers again before you talk.`
            : `“${displayName(p.identity)}” has a different safety number than in an earlier call. They may use another device — or be someone else. Compare safety numbers.`,
        };
      }
      render(p);
      break;
    }
    case 'identity_changed': {
      if (!p) return;
      p.encrypted = false;
      p.changed = {
        accept: true,
        text: `${displayName(p.identity)}'s identity key CHANGED during this call${ev.wasVerified ? ' (you had verified the old one)' : ''}. Their audio and keys are blocked. Only continue if you know why it changed.`,
      };
      render(p);
      break;
    }
    case 'decrypt_stats':
      app.decrypt = ev.stats;
      checkKeys();
      break;
    case 'error':
      console.warn('e2ee:', ev.participantId || '', ev.code, ev.message);
      break;
    default:
  }
  refreshBanner();
}

/** Marks peers whose audio fails to decrypt, or whose keys never came. */
function checkKeys() {
  const by = (app.decrypt && app.decrypt.byParticipant) || {};
  for (const p of app.participants.values()) {
    if (p.self || p.plain) continue;
    let failing = '';
    const s = by[p.id];
    const failures = s ? FAILURE_REASONS.reduce((n, r) => n + (s[r] || 0), 0) : 0;
    if (failures > 0 && (!s.decrypted || failures > s.decrypted / 10)) {
      failing =
        s.wrong_sender > failures / 2
          ? `Audio arriving as ${displayName(p.identity)} is sealed with another participant's key, and is not played (${s.wrong_sender} frames dropped). The server may be tampering with the call.`
          : `Audio from ${displayName(p.identity)} cannot be decrypted (${failures} frames dropped). They may need to rejoin.`;
    } else if (!p.encrypted && !p.changed && (Date.now() - p.since) / 1000 > KEY_TIMEOUT_S) {
      failing = `No encryption keys from ${displayName(p.identity)} after ${KEY_TIMEOUT_S} s: their audio is not played. Their app may be incompatible, or the connection is failing.`;
    }
    if (failing !== p.failing) {
      p.failing = failing;
      render(p);
    }
  }
  refreshBanner();
}

function refreshBanner() {
  if (app.screen !== 'call') return;
  for (const p of app.participants.values()) {
    if (p.changed) return banner(`⚠ Security warning: ${p.changed.text}`);
  }
  for (const p of app.participants.values()) {
    if (p.failing) return banner(p.failing);
  }
  banner('');
}

function render(p) {
  if (!p.el) {
    p.el = $('participant-template').content.firstElementChild.cloneNode(true);
    p.el.dataset.participant = p.id;
    p.el.querySelector('.p-verify').addEventListener('click', () => toggleVerified(p));
    if (p.self) $('participants').prepend(p.el);
    else $('participants').append(p.el);
  }
  const el = p.el;
  el.classList.toggle('speaking', p.speaking);
  el.classList.toggle('changed', !!p.changed);
  const name = el.querySelector('.p-name');
  name.textContent = displayName(p.identity);
  name.title = `${p.identity} (${identityTag(p.identity) || 'no tag'})`;
  el.querySelector('.p-you').hidden = !p.self;

  const badge = el.querySelector('.p-enc');
  if (p.self) {
    badge.className = 'badge p-enc encrypted';
    badge.textContent = 'Your audio is end-to-end encrypted';
  } else if (p.plain) {
    badge.className = 'badge p-enc failing';
    badge.textContent = 'Not encrypted — cannot be heard';
  } else if (p.changed && p.changed.accept) {
    badge.className = 'badge p-enc failing';
    badge.textContent = 'Identity changed — blocked';
  } else if (p.failing) {
    badge.className = 'badge p-enc failing';
    badge.textContent = 'Cannot decrypt';
  } else if (p.encrypted) {
    badge.className = 'badge p-enc encrypted';
    badge.textContent = 'End-to-end encrypted';
  } else {
    badge.className = 'badge p-enc pending';
    badge.textContent = 'Setting up encryption…';
  }
  el.querySelector('.p-verified').hidden = p.self || !p.verified || !p.encrypted;

  const safety = el.querySelector('.p-safety');
  safety.hidden = p.self || !p.safetyNumber;
  const sn = el.querySelector('.safety-number');
  if (sn.dataset.value !== p.safetyNumber) {
    sn.dataset.value = p.safetyNumber;
    sn.replaceChildren(
      ...p.safetyNumber.split(' ').filter(Boolean).map((g) => {
        const span = document.createElement('span');
        span.textContent = g;
        return span;
      }),
    );
  }
  el.querySelector('.p-verify').textContent = p.verified ? 'Unmark verified' : 'Mark verified';

  const warn = el.querySelector('.p-warning');
  warn.hidden = !p.changed;
  warn.textContent = '';
  if (p.changed) {
    warn.append(`⚠ ${p.changed.text} `);
    if (p.changed.accept) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'small-button';
      b.textContent = 'Accept the new key';
      b.addEventListener('click', () => acceptChange(p));
      warn.append(b);
    } else {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'small-button';
      b.textContent = 'Dismiss';
      b.addEventListener('click', () => {
        p.changed = null;
        render(p);
        refreshBanner();
      });
      warn.append(b);
    }
  }
}

async function acceptChange(p) {
  if (await app.crypto.acceptIdentityChange(p.id)) {
    p.changed = null;
    p.verified = false;
    render(p);
    refreshBanner();
  }
}

function toggleVerified(p) {
  if (!p.fingerprint) return;
  p.verified = !p.verified;
  app.contacts.setVerified(p.fingerprint, p.verified);
  app.crypto.setVerified(p.id, p.verified).catch((err) => console.warn('verify:', err));
  if (p.verified && p.changed && !p.changed.accept) p.changed = null;
  render(p);
  refreshBanner();
}

function toggleMute() {
  const b = $('mute-button');
  const muted = b.getAttribute('aria-pressed') !== 'true';
  app.session.setMuted(muted);
  b.setAttribute('aria-pressed', String(muted));
  b.textContent = muted ? 'Unmute' : 'Mute';
}

async function leaveCall() {
  if (app.session) await app.session.leave();
}

/** Ends the call for everyone on the second click, so a slip does not. */
async function endCall() {
  const b = $('end-button');
  if (!b.dataset.armed) {
    b.dataset.armed = '1';
    b.textContent = 'Click again to end for everyone';
    setTimeout(() => {
      delete b.dataset.armed;
      b.textContent = 'End call for everyone';
    }, 4000);
    return;
  }
  busy(b, true);
  try {
    await api.endCall(app.room, app.token);
  } catch (err) {
    banner(describeError(err));
    busy(b, false);
  }
}

const CLOSED_TEXT = {
  left: ['You left the call', 'You can close this page.'],
  room_ended: ['The call has ended', 'The call was ended for everyone by the person who started it.'],
  replaced: ['You joined from elsewhere', 'You joined this call from another tab or window; this one was disconnected.'],
  dropped: ['Disconnected', 'The connection to the server was lost for too long.'],
  ice_failed: ['The audio connection failed', 'Your browser could not reach the server for audio (a firewall may block it).'],
  server_shutdown: ['The server is restarting', 'The call was interrupted by a server restart. Try again in a moment.'],
  disconnected: ['Disconnected', 'The connection to the server was lost.'],
};

/** Releases the call's keys, worker, microphone and audio. */
function teardown() {
  clearInterval(app.keyTimer);
  if (app.chat) app.chat.close();
  app.chat = null;
  if (app.crypto) app.crypto.close();
  if (app.worker) app.worker.terminate();
  if (app.mic) for (const t of app.mic.getTracks()) t.stop();
  for (const a of app.audio.values()) a.remove();
  app.audio.clear();
  app.participants.clear();
  $('participants').replaceChildren();
  app.crypto = null;
  app.worker = null;
  app.mic = null;
  app.session = null;
}

function ended(reason) {
  app.closedReason = reason;
  teardown();
  // Leaving on purpose, or for good, forgets the call; a reload or a lost
  // connection keeps it to rejoin.
  if (!app.unloading && ['left', 'room_ended', 'replaced'].includes(reason)) forgetCall();
  if (app.abandoned) {
    // A join that failed: fail() has said why.
    app.abandoned = false;
    return;
  }
  banner('');
  let [title, text] = CLOSED_TEXT[reason] || ['The call has ended', `Reason: ${reason}`];
  if (reason === 'room_ended' && app.role === 'creator') text = 'You ended the call for everyone.';
  history.replaceState(null, '', '/');
  message(title, text);
}

function fail(err) {
  console.error(err);
  if (err instanceof ApiError && ['call_ended', 'room_full', 'unauthorized', 'token_expired', 'wrong_room'].includes(err.code)) {
    forgetCall();
  }
  if (app.session && !app.session.closed) {
    app.abandoned = true;
    app.session.leave();
  } else if (app.mic) {
    teardown();
  }
  banner(describeError(err));
  if (err instanceof ApiError && ['invite_expired', 'invite_invalid', 'call_ended', 'room_full'].includes(err.code)) {
    message(err.code === 'room_full' ? 'This call is full' : 'This invite link cannot be used', describeError(err));
  }
}

// ---- the test hook: read-only state for the browser tests ----

/** Where this caller's frames are sealed now, without the key itself. */
function sendKeyCoordinates() {
  const k = app.crypto && app.crypto.sendKeyState();
  if (!k) return null;
  k.baseKey.fill(0); // a copy, not needed here
  return { senderIndex: k.senderIndex, generation: k.generation, step: k.step };
}

window.sottoTest = {
  state() {
    return {
      screen: app.screen,
      role: app.role,
      room: app.room,
      selfId: app.selfId,
      identity: app.identity,
      status: app.status,
      closedReason: app.closedReason,
      banner: $('banner').hidden ? '' : $('banner').textContent,
      inviteLink: $('invite-link').value,
      sendKey: sendKeyCoordinates(),
      participants: [...app.participants.values()].map((p) => ({
        id: p.id,
        identity: p.identity,
        self: p.self,
        speaking: p.speaking,
        encrypted: p.encrypted,
        safetyNumber: p.safetyNumber,
        verified: p.verified,
        warning: p.changed ? p.changed.text : '',
        failing: p.failing,
      })),
    };
  },
  messages() {
    return app.chat ? app.chat.state() : null;
  },
  async stats() {
    return {
      decrypt: app.decrypt,
      inbound: app.session ? await app.session.inboundAudio() : {},
      codecs: app.session ? await app.session.codecs() : [],
    };
  },
};

// ---- wiring ----

function init() {
  $('start-form').addEventListener('submit', startCall);
  $('invite-form').addEventListener('submit', acceptInvite);
  $('decline-button').addEventListener('click', declineInvite);
  $('mute-button').addEventListener('click', toggleMute);
  $('leave-button').addEventListener('click', leaveCall);
  $('end-button').addEventListener('click', endCall);
  $('copy-button').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText($('invite-link').value);
      $('copy-button').textContent = 'Copied';
    } catch {
      $('invite-link').select();
    }
  });
  $('rejoin-button').addEventListener('click', rejoin);
  window.addEventListener('pagehide', () => {
    app.unloading = true;
    if (app.session && !app.session.closed) app.session.leave();
  });
  if (!window.isSecureContext) {
    banner('This page needs a secure context (https, or http on localhost) to use the microphone and encryption.');
  }
  const invite = inviteFromFragment();
  if (rememberedCall()) {
    message('You left the call', 'The page was reloaded. Rejoin the call, or start a new one.');
  } else if (invite) {
    showInvite(invite);
  } else {
    show('start');
    $('start-name').focus();
  }
}

init();
