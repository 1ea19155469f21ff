// The Sotto page: start a private call or answer an invite, then run the
// call with end-to-end encryption (e2ee/call.js) over the relay
// (session.js). No framework; the DOM is in index.html.

import { api, describeError, ApiError, E2EE, UnreachableError } from './api.js';
import { Contacts, displayName, identityTag } from './contacts.js';
import { CallSession } from './session.js';
import { Resumption, Returning, resumable } from './resume.js';
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
  resuming: null, // the Resumption rejoining a lost call
  reconnecting: false, // from losing the call until media flows again
  returning: new Returning(), // people expected back after a rejoin
  replaces: '', // this tab's earlier participant, taken over by a rejoin
  door: 'host', // who lets guests in
  knock: null, // the guest's own knock while it waits: {id, secret, state, by, expires}
  knocks: new Map(), // knock id -> Knock, the guests this participant may answer
  switched: new Map(), // identity -> safety number of its device before a switch
  focused: '', // the participant whose safety number the host asked to see
  ended: null, // {by, at} of a call ended for everyone
};

// The call this tab is in, kept in sessionStorage (this tab only, gone when
// it closes) so that a reload or a lost connection can rejoin it.
const CALL_KEY = 'sotto.call';

function rememberCall() {
  const { role, room, token, identity, invite, inviteExpires, inviter, selfId } = app;
  sessionStorage.setItem(CALL_KEY, JSON.stringify({ role, room, token, identity, invite, inviteExpires, inviter, selfId }));
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
    this.muted = false;
    this.note = ''; // e.g. a device switch
    this.since = Date.now();
    this.el = null;
  }
}

/** One format for every date and time the page shows (invite and knock
 *  expiries, when a call ended). */
function formatWhen(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** The inviter named in an invite's claims, unverified: only for wording
 *  a message once the server has answered about the invite. */
function inviterOf(invite) {
  try {
    const claims = invite.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(claims)).from || '';
  } catch {
    return '';
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

function message(title, text, { askAgain = false } = {}) {
  $('message-title').textContent = title;
  $('message-text').textContent = text;
  $('rejoin-button').hidden = !rememberedCall();
  $('ask-again-button').hidden = !askAgain;
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
    $('invite-expiry').textContent = `This invitation is valid until ${formatWhen(info.expires)}.`;
    show('invite');
    $('invite-name').focus();
  } catch (err) {
    if (err instanceof ApiError && err.code === 'call_ended') {
      endedInviteMessage();
    } else if (err instanceof ApiError) {
      message('This invite link cannot be used', describeError(err));
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
    let r = await api.redeemInvite(app.invite, name);
    if (r.id) r = await waitAtDoor(r);
    if (!r) return; // not let in: waitAtDoor has said why
    app.role = 'invitee';
    app.room = r.room;
    app.token = r.token;
    app.identity = r.identity;
    app.inviter = r.inviter;
    app.replaces = '';
    await joinCall();
  } catch (err) {
    fail(err);
  } finally {
    busy($('accept-button'), false);
  }
}

/** The guest waits at the door until the host answers. Resolves with the
 *  admitted knock (its token), or null when not let in, after saying why. */
async function waitAtDoor(first) {
  const k = { id: first.id, secret: first.secret, room: first.room, state: first.state, by: '', expires: first.expires };
  app.knock = k;
  const host = displayName(first.inviter);
  $('knock-title').textContent = `Asking ${host} to let you in…`;
  $('knock-text').textContent = `${host} sees your name and decides. Please wait here: they have until ${formatWhen(k.expires)} to answer.`;
  show('knock');
  try {
    let failures = 0;
    while (app.knock === k && k.state === 'pending') {
      try {
        const r = await api.waitKnock(k, 15);
        failures = 0;
        if (app.knock !== k) break; // the guest stopped asking
        Object.assign(k, { state: r.state, by: r.by || '' });
        if (r.state === 'admitted') return r;
      } catch (err) {
        // A lost connection is retried while the knock lasts.
        if (!(err instanceof UnreachableError) || ++failures > 5 || Date.now() / 1000 > k.expires) throw err;
        await new Promise((resolve) => setTimeout(resolve, 1000 * failures));
      }
    }
  } finally {
    if (app.knock === k) app.knock = null;
  }
  closeMicrophone();
  switch (k.state) {
    case 'refused':
      message('You were not let in', `${displayName(k.by) || host} turned down your request to join this call.`);
      break;
    case 'expired':
      message('Nobody let you in', `${host} did not answer your request to join in time. You can ask again.`, { askAgain: true });
      break;
    case 'ended':
      message('This call has ended', `${host} ended the call while you were waiting to be let in.`);
      break;
    default: // withdrawn, by this page
      message('You stopped asking to join', `Nobody was told anything more about you. You can ask ${host} again.`, { askAgain: true });
  }
  return null;
}

/** The guest gives up waiting: waitAtDoor stops, and says so, once the
 *  server has the knock withdrawn (which ends its long poll). */
async function cancelKnock() {
  const k = app.knock;
  if (!k) return;
  app.knock = null;
  busy($('cancel-knock-button'), true);
  try {
    await api.withdrawKnock(k);
  } catch (err) {
    console.warn('withdraw knock (it expires on its own):', err);
  } finally {
    busy($('cancel-knock-button'), false);
  }
}

function askAgain() {
  banner('');
  showInvite(app.invite);
}

/** What a dead link of an ended call says: who ended it. */
function endedInviteMessage() {
  const who = displayName(app.inviter || inviterOf(app.invite));
  message('This call has ended', who ? `${who} ended this call, so its invite link no longer works.` : 'Its host ended this call, so its invite link no longer works.');
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
  app.replaces = c.selfId || ''; // this tab's participant, not another device's
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

function closeMicrophone() {
  if (app.mic) for (const t of app.mic.getTracks()) t.stop();
  app.mic = null;
}

/** Joins app.room with app.token, creator controls included. */
async function joinCall() {
  const creator = app.role === 'creator';
  $('invite-panel').hidden = !creator;
  $('end-button').hidden = !creator;
  if (creator) {
    $('invite-link').value = `${location.origin}/join#invite=${encodeURIComponent(app.invite)}`;
  }
  $('mute-button').setAttribute('aria-pressed', 'false');
  $('mute-button').textContent = 'Mute';
  app.closedReason = '';
  app.ended = null;
  app.focused = '';
  app.switched.clear();
  clearKnocks();
  setDoor('host');
  await connect();
  show('call');
  rememberCall();
}

/** Joins the room once: keys, worker, media, event stream. A rejoin finds
 *  the people of the call, back under new participant ids, by identity. */
async function connect() {
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
    replaces: app.replaces,
  });
  app.session = session;
  session.addEventListener('track', (e) => playRemote(e.detail.participantId, e.detail.stream));
  session.addEventListener('speaking', (e) => setSpeaking(e.detail.participantId, e.detail.speaking));
  session.addEventListener('connection', (e) => connectionChanged(e.detail.state));
  session.addEventListener('closed', (e) => {
    if (app.session === session && !resumed(e.detail)) ended(e.detail.reason, e.detail);
  });
  session.addEventListener('knock', (e) => onKnock(e.detail.knock));
  session.addEventListener('door', (e) => setDoor(e.detail.door, e.detail.by));
  session.addEventListener('servererror', (e) => console.warn('server:', e.detail.code, e.detail.message));

  if (!app.reconnecting) setStatus('connecting…');
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
    setDoor(e.detail.door);
    // The knocks waiting now; those answered while the stream was away are gone.
    for (const id of [...app.knocks.keys()]) if (app.knocks.get(id).state === 'pending') dropKnock(id);
    for (const k of e.detail.knocks) onKnock(k);
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
      connectionChanged(session.pc.connectionState);
    }
  });
  session.addEventListener('joined', (e) => {
    const p = e.detail.participant;
    addPerson(p);
    const person = app.participants.get(p.id);
    if (person && app.switched.has(p.identity)) {
      person.switchedFrom = app.switched.get(p.identity);
      person.note = `${displayName(p.identity)} switched devices. Their new device is setting up encryption…`;
      app.switched.delete(p.identity);
      render(person);
    }
    refreshKnocks();
    if (p.e2ee === E2EE) cc.onJoined(p);
  });
  session.addEventListener('left', (e) => {
    const { participant, reason } = e.detail;
    if (reason === 'moved_to_another_device') {
      const old = app.participants.get(participant.id);
      app.switched.set(participant.identity, { safetyNumber: old ? old.safetyNumber : '' });
    }
    cc.onLeft(participant);
    // The server is stopping and tells everyone in turn: they rejoin, as
    // this page does.
    if (reason === 'server_shutdown' || reason === 'room_moved') expectBack(participant.id);
    else removePerson(participant.id);
    refreshKnocks();
  });
  session.addEventListener('envelope', (e) => cc.onEnvelope(e.detail.from, e.detail.data));
  session.addEventListener('left', (e) => app.chat && app.chat.forget(e.detail.participant.id));
  session.addEventListener('prekeys_low', (e) => cc.onPrekeysLow(e.detail.remaining));

  addSelf(jr.participant_id, jr.identity);
  session.openEvents();
  clearInterval(app.keyTimer);
  app.keyTimer = setInterval(checkKeys, 1000);
}

function addSelf(id, identity) {
  let me = [...app.participants.values()].find((p) => p.self);
  if (me) app.participants.delete(me.id);
  else me = new Person(id, identity, true);
  me.id = id;
  app.participants.set(id, me);
  render(me);
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
    case 'reconnecting':
      return 'Reconnecting…';
    case 'failed':
      return 'connection failed';
    default:
      return `${state}…`;
  }
}

/** While a lost call rejoins, the page says "Reconnecting…" until the
 *  new media connects. */
function connectionChanged(state) {
  if (app.reconnecting && state !== 'connected') return;
  app.reconnecting = false;
  setStatus(connectionText(state));
}

function setStatus(text) {
  app.status = text;
  $('call-status').textContent = text;
}

function addPerson(p) {
  if (p.id === app.selfId || app.participants.has(p.id)) return;
  const back = app.returning.claim(p.identity);
  if (back) {
    // Someone the call knew, back under a new participant id.
    app.participants.delete(back.id);
    back.id = p.id;
    back.since = Date.now();
    back.el.dataset.participant = p.id;
    app.participants.set(p.id, back);
    render(back);
    return;
  }
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
    case 'peer_muted':
      if (!p) return;
      p.muted = ev.muted;
      render(p);
      break;
    case 'peer_encrypted': {
      if (!p) return;
      p.encrypted = true;
      p.failing = '';
      p.fingerprint = ev.fingerprint;
      p.safetyNumber = ev.safetyNumber || '';
      if (p.switchedFrom) {
        p.note =
          p.safetyNumber === p.switchedFrom.safetyNumber
            ? `${displayName(p.identity)} switched devices; the safety number stayed the same.`
            : `${displayName(p.identity)} switched devices: this is the new device's safety number. Compare it with them again.`;
      }
      refreshKnocks();
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
        text: p.switchedFrom
          ? `${displayName(p.identity)} switched to another device, which has another identity key${ev.wasVerified ? ' (you had verified the old one)' : ''}. Their audio and keys are blocked until you accept it: compare the new safety number with them first.`
          : `${displayName(p.identity)}'s identity key CHANGED during this call${ev.wasVerified ? ' (you had verified the old one)' : ''}. Their audio and keys are blocked. Only continue if you know why it changed.`,
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
  el.classList.toggle('focused', app.focused === p.id);
  el.querySelector('.p-muted').hidden = !p.muted;
  const note = el.querySelector('.p-note');
  note.hidden = !p.note;
  note.textContent = p.note;
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
  if (app.crypto) app.crypto.setMuted(muted);
  b.setAttribute('aria-pressed', String(muted));
  b.textContent = muted ? 'Unmute' : 'Mute';
  const me = app.participants.get(app.selfId);
  if (me) {
    me.muted = muted;
    render(me);
  }
}

async function leaveCall() {
  if (app.resuming) {
    // Between joins: a join under way is left too.
    if (app.session) app.session.leave();
    ended('left');
    return;
  }
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
  room_ended: ['The call has ended', 'The person who started it ended the call for everyone.'],
  replaced: ['You joined from elsewhere', 'You joined this call from another tab or window; this one was disconnected.'],
  moved_to_another_device: ['Your call moved to another device', 'You joined this call from another device or browser, so it goes on there. This page is no longer in the call.'],
  dropped: ['Disconnected', 'The connection to the server was lost for too long.'],
  ice_failed: ['The audio connection failed', 'Your browser could not reach the server for audio (a firewall may block it).'],
  server_shutdown: ['The server is restarting', 'The call was interrupted by a server restart. Try again in a moment.'],
  disconnected: ['Disconnected', 'The connection to the server was lost.'],
  not_resumed: ['Disconnected', 'The call was lost and could not be rejoined within a minute.'],
  token_expired: ['Your pass has expired', 'The call was lost, and your pass for it expired before it could be rejoined.'],
};

/** Releases the call's keys, worker, microphone and audio. */
function teardown() {
  clearInterval(app.keyTimer);
  if (app.resuming) app.resuming.cancel();
  app.resuming = null;
  app.returning.clear();
  app.reconnecting = false;
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
  clearKnocks();
}

function ended(reason, { by = '', at = 0 } = {}) {
  app.closedReason = reason;
  if (reason === 'room_ended') app.ended = { by, at: at || Math.floor(Date.now() / 1000) };
  teardown();
  // Leaving on purpose, or for good, forgets the call; a reload or a lost
  // connection keeps it to rejoin.
  if (!app.unloading && ['left', 'room_ended', 'replaced', 'moved_to_another_device', 'token_expired'].includes(reason)) forgetCall();
  if (app.abandoned) {
    // A join that failed: fail() has said why.
    app.abandoned = false;
    return;
  }
  banner('');
  let [title, text] = CLOSED_TEXT[reason] || ['The call has ended', `Reason: ${reason}`];
  if (reason === 'room_ended') {
    const who = by && by !== app.identity ? displayName(by) : '';
    const when = formatWhen(app.ended.at);
    if (by === app.identity || (!by && app.role === 'creator')) text = `You ended the call for everyone on ${when}.`;
    else text = `${who || 'The person who started it'} ended the call for everyone on ${when}.`;
  }
  history.replaceState(null, '', '/');
  message(title, text);
}

// ---- a lost call rejoins (resume.js) ----

/** Takes over a session that ended for a reason a new join cures: keeps
 *  the microphone and the people, drops the media and keys, and rejoins
 *  the room. Returns false for an end that is final. */
function resumed({ reason, retryAfterMs }) {
  if (app.unloading || app.screen !== 'call' || !resumable(reason)) return false;
  console.info(`call lost (${reason}); rejoining`);
  // The rejoin takes over this tab's own participant, if the server still
  // holds it: not a switch to another device.
  app.replaces = app.selfId || '';
  suspend();
  app.reconnecting = true;
  setStatus('Reconnecting…');
  const r = new Resumption({ token: app.token, retryAfterMs, attempt: rejoinOnce });
  app.resuming = r;
  r.run().then(
    (after) => {
      if (app.resuming !== r) return;
      app.resuming = null;
      console.info(`call rejoined after ${after} ms`);
      app.returning.giveUpLater((p) => removePerson(p.id));
    },
    (err) => {
      if (app.resuming !== r || err.kind === 'cancelled') return;
      app.resuming = null;
      console.warn(err.message);
      const code = err.kind === 'refused' ? err.cause.code : '';
      ended(code === 'call_ended' ? 'room_ended' : err.kind === 'expired' ? 'token_expired' : code || 'not_resumed');
    },
  );
  return true;
}

async function rejoinOnce() {
  try {
    await connect();
  } catch (err) {
    suspend();
    throw err;
  }
}

/** Ends the current join's media, keys and worker, keeping the microphone
 *  and the people, who are expected back. */
function suspend() {
  clearInterval(app.keyTimer);
  const s = app.session;
  app.session = null;
  if (s && !s.closed) s.leave();
  if (app.crypto) app.crypto.close();
  if (app.worker) app.worker.terminate();
  app.crypto = null;
  app.worker = null;
  app.decrypt = null;
  for (const a of app.audio.values()) a.remove();
  app.audio.clear();
  for (const p of app.participants.values()) if (!p.self) expectBack(p.id);
  app.returning.pause();
}

/** Keeps participant id listed, waiting for encryption, until it is back
 *  under a new id or given up. */
function expectBack(id) {
  const p = app.participants.get(id);
  if (!p) return;
  p.encrypted = false;
  p.speaking = false;
  p.failing = '';
  app.returning.expect(p);
  app.returning.giveUpLater((q) => removePerson(q.id));
  render(p);
  refreshBanner();
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
  if (err instanceof ApiError && err.code === 'call_ended') {
    banner('');
    endedInviteMessage();
  } else if (err instanceof ApiError && ['invite_expired', 'invite_invalid', 'room_full'].includes(err.code)) {
    message(err.code === 'room_full' ? 'This call is full' : 'This invite link cannot be used', describeError(err));
  }
}

// ---- the door: guests who knock, as the host (or, if the host allows it,
// anyone in the call) sees them ----

/** Whether this participant may let guests in. */
function mayAnswer() {
  return app.role === 'creator' || app.door === 'call';
}

const DOOR_TEXT = {
  host: (when) => `Anyone with this link can ask to join until ${when}; you decide who comes in. Send it privately.`,
  call: (when) => `Anyone with this link can ask to join until ${when}; anyone in the call can let them in. Send it privately.`,
  open: (when) => `Anyone with this link can join until ${when} without asking. Send it privately.`,
};

function setDoor(door, by = '') {
  app.door = DOOR_TEXT[door] ? door : 'host';
  $('door-select').value = app.door;
  $('invite-panel-text').textContent = DOOR_TEXT[app.door](formatWhen(app.inviteExpires));
  if (by) console.info(`door set to ${app.door} by ${by}`);
  if (!mayAnswer()) {
    for (const [id, e] of app.knocks) if (e.knock.state === 'pending') dropKnock(id);
  }
}

async function changeDoor() {
  const sel = $('door-select');
  const before = app.door;
  sel.disabled = true;
  try {
    await api.setDoor(app.room, app.token, sel.value);
    setDoor(sel.value);
  } catch (err) {
    sel.value = before;
    banner(describeError(err));
  } finally {
    sel.disabled = false;
  }
}

/** The participant a knock's guest became, once in the call. */
function personOf(knock) {
  for (const p of app.participants.values()) if (p.identity === knock.identity) return p;
  return null;
}

function onKnock(k) {
  let e = app.knocks.get(k.id);
  if (!e) {
    if (k.state !== 'pending') return; // answered before this page saw it
    e = { knock: k, el: null, timer: 0 };
    app.knocks.set(k.id, e);
  }
  e.knock = k;
  clearTimeout(e.timer);
  // Answered knocks fade; an admitted guest stays a while, for its safety number.
  if (k.state !== 'pending') e.timer = setTimeout(() => dropKnock(k.id), k.state === 'admitted' ? 120000 : 8000);
  renderKnock(e);
  refreshKnocks();
}

function dropKnock(id) {
  const e = app.knocks.get(id);
  if (!e) return;
  clearTimeout(e.timer);
  if (e.el) e.el.remove();
  app.knocks.delete(id);
  refreshKnocks();
}

function clearKnocks() {
  for (const id of [...app.knocks.keys()]) dropKnock(id);
}

/** Re-renders the knocks, whose text follows the admitted guests into the call. */
function refreshKnocks() {
  for (const e of app.knocks.values()) renderKnock(e);
  $('knocks-panel').hidden = app.knocks.size === 0;
}

function knockStatus(k, person) {
  const by = k.by === app.identity ? 'you' : displayName(k.by);
  switch (k.state) {
    case 'pending':
      return 'is asking to join';
    case 'admitted':
      if (!person) return `let in by ${by}, joining…`;
      return person.safetyNumber ? `let in by ${by}, in the call` : `let in by ${by}, setting up encryption…`;
    case 'refused':
      return `turned away by ${by}`;
    case 'expired':
      return 'nobody answered in time';
    case 'withdrawn':
      return 'stopped asking';
    default:
      return 'the call ended';
  }
}

function renderKnock(e) {
  const k = e.knock;
  if (!e.el) {
    e.el = $('knock-template').content.firstElementChild.cloneNode(true);
    e.el.dataset.knock = k.id;
    e.el.querySelector('.k-admit').addEventListener('click', () => answerKnock(e, 'admit'));
    e.el.querySelector('.k-refuse').addEventListener('click', () => answerKnock(e, 'refuse'));
    e.el.querySelector('.k-safety').addEventListener('click', () => {
      const p = personOf(e.knock);
      if (p) focusPerson(p);
    });
    $('knocks').append(e.el);
  }
  const person = k.state === 'admitted' ? personOf(k) : null;
  const name = e.el.querySelector('.k-name');
  name.textContent = displayName(k.identity);
  name.title = k.identity;
  e.el.querySelector('.k-status').textContent = knockStatus(k, person);
  e.el.querySelector('.k-answer').hidden = k.state !== 'pending';
  const safety = e.el.querySelector('.k-safety');
  safety.hidden = k.state !== 'admitted';
  safety.disabled = !person || !person.safetyNumber;
  e.el.classList.toggle('pending', k.state === 'pending');
}

async function answerKnock(e, action) {
  const buttons = e.el.querySelectorAll('.k-answer button');
  for (const b of buttons) busy(b, true);
  try {
    onKnock(await api.answerKnock(app.room, app.token, e.knock.id, action));
  } catch (err) {
    banner(describeError(err));
  } finally {
    for (const b of buttons) busy(b, false);
  }
}

/** Brings a participant's safety number into view, ready to compare and
 *  mark verified. */
function focusPerson(p) {
  const before = app.participants.get(app.focused);
  app.focused = p.id;
  if (before) render(before);
  render(p);
  p.el.scrollIntoView({ block: 'center', behavior: 'smooth' });
  p.el.querySelector('.p-verify').focus({ preventScroll: true });
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
      reconnecting: app.reconnecting,
      iceRestarts: app.session ? app.session.iceRestarts : 0,
      closedReason: app.closedReason,
      banner: $('banner').hidden ? '' : $('banner').textContent,
      inviteLink: $('invite-link').value,
      sendKey: sendKeyCoordinates(),
      door: app.door,
      knock: app.knock ? { id: app.knock.id, state: app.knock.state } : null,
      knocks: [...app.knocks.values()].map(({ knock: k }) => ({ id: k.id, name: k.name, identity: k.identity, state: k.state, by: k.by || '' })),
      focused: app.focused,
      muted: $('mute-button').getAttribute('aria-pressed') === 'true',
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
        muted: p.muted,
        note: p.note,
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
      path: app.session ? await app.session.mediaPath() : null,
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
  $('ask-again-button').addEventListener('click', askAgain);
  $('cancel-knock-button').addEventListener('click', cancelKnock);
  $('door-select').addEventListener('change', changeDoor);
  window.addEventListener('pagehide', () => {
    app.unloading = true;
    if (app.resuming) app.resuming.cancel();
    if (app.knock) api.withdrawKnock(app.knock).catch(() => {});
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
