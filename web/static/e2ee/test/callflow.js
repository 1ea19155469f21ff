// The call-level protocol between CallCrypto instances wired together in
// one page: envelopes go straight from one to another (in order per
// recipient, like the relay), the prekey directory is a map, and each
// participant's FrameCrypto (the worker's logic) runs in the page. Results
// are published as window.callflowResults = {done, results: [{group, name,
// ok, error}]}; web/e2ee_test.go drives this page in Chromium.

import { toBase64, utf8 } from '../bytes.js';
import { CallCrypto } from '../call.js';
import { FrameCrypto } from '../framecrypto.js';
import { PrivateIdentity } from '../identity.js';
import { MemoryTrustStore } from '../truststore.js';

const results = [];
window.callflowResults = { done: false, results };
const td = new TextDecoder();

function check(name, cond, detail = '') {
  results.push({ group: 'callflow', name, ok: !!cond, error: cond ? '' : `failed ${detail}` });
  if (!cond) console.error('FAIL', name, detail);
}

async function waitFor(name, cond, timeoutMs = 15000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return check(name, true);
    if (Date.now() > end) return check(name, false, `(condition not met within ${timeoutMs} ms)`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The prekey directory of docs/API.md, in memory. */
class Directory {
  constructor() {
    this.bundles = new Map();
  }

  upload(name, j) {
    let b = this.bundles.get(name);
    if (!b || b.identity_key !== j.identity_key) this.bundles.set(name, (b = { identity_key: j.identity_key, otpks: [], kems: [] }));
    b.signed_prekey = j.signed_prekey;
    b.kem_prekey = j.kem_prekey;
    b.otpks.push(...j.one_time_prekeys);
    b.kems.push(...j.one_time_kem_prekeys);
    return Promise.resolve({ remaining: b.otpks.length });
  }

  fetch(name) {
    const b = this.bundles.get(name);
    if (!b) return Promise.reject(new Error(`no bundle for ${name}`));
    const out = { identity: name, identity_key: b.identity_key, signed_prekey: b.signed_prekey, kem_prekey: b.kem_prekey };
    const opk = b.otpks.shift();
    if (opk) out.one_time_prekey = opk;
    const kem = b.kems.shift();
    if (kem) out.one_time_kem_prekey = kem;
    return Promise.resolve(out);
  }
}

/** The envelope relay: in order per recipient; links can be cut (the
 *  envelopes are held) and restored. */
class Net {
  constructor() {
    this.nodes = new Map();
    this.cut = new Map(); // "from>to" -> held envelopes
    this.sent = 0;
  }

  send(from, to, bytes) {
    this.sent++;
    const held = this.cut.get(`${from}>${to}`);
    if (held) return held.push(bytes);
    const node = this.nodes.get(to);
    if (node) node.inbox = node.inbox.then(() => node.cc.onEnvelope(from, bytes.slice()));
  }

  sever(from, to) {
    this.cut.set(`${from}>${to}`, []);
  }

  restore(from, to) {
    const held = this.cut.get(`${from}>${to}`) || [];
    this.cut.delete(`${from}>${to}`);
    for (const b of held) this.send(from, to, b);
  }
}

const dir = new Directory();
const net = new Net();

/** A Worker look-alike that runs FrameCrypto in the page. */
function pageWorker(fc) {
  const listeners = new Set();
  return {
    postMessage: (m) => fc.handleMessage(structuredClone(m)),
    addEventListener: (_, l) => listeners.add(l),
    removeEventListener: (_, l) => listeners.delete(l),
    emit: (m) => listeners.forEach((l) => l({ data: m })),
  };
}

async function participant(id, identityName, { selfIdAtStart = false } = {}) {
  const identity = await PrivateIdentity.generate();
  const events = [];
  // A clock that moves only when the test says: a switch-over by delay is
  // then tested without racing a timer.
  const clock = { t: Date.UTC(2026, 0, 1) };
  let worker = null;
  const fc = new FrameCrypto({ statsIntervalMs: 0, post: (m) => worker && worker.emit(m) });
  worker = pageWorker(fc);
  const cc = new CallCrypto({
    identity,
    selfId: selfIdAtStart ? undefined : id,
    selfIdentityName: identityName,
    trustStore: new MemoryTrustStore(),
    api: { fetchBundle: (n) => dir.fetch(n), uploadBundle: (j) => dir.upload(identityName, j) },
    sendEnvelope: (to, b) => net.send(id, to, b),
    onEvent: (e) => {
      events.push(e);
      if (e.type === 'error') console.warn(id, 'error event', e.code, e.message);
    },
    now: () => clock.t,
    switchDelayMs: 1000,
    prekeyBatch: 5,
  });
  cc.attachWorker(worker);
  net.nodes.set(id, { cc, inbox: Promise.resolve() });
  return { id, identityName, identity, cc, fc, events, clock, p: { id, identity: identityName } };
}

const encrypted = (x, peer) => x.events.some((e) => e.type === 'peer_encrypted' && e.participantId === peer.id);
const sealing = (x, gen, step) => {
  const c = x.fc.sealer.current;
  return c && c.generation === gen && c.step === step;
};
async function frame(x, text) {
  return x.fc.encryptFrame(utf8(text));
}
async function opens(x, f, from) {
  const pt = await x.fc.decryptFrame(f, from.id);
  return pt !== null ? td.decode(pt) : null;
}
const errors = (x) => x.events.filter((e) => e.type === 'error');

async function main() {
  const A = await participant('p_a', 'alice');
  const B = await participant('p_b', 'bob');
  // Carol is created as the app does it: publish before joining, her
  // participant id given to start() after the join.
  const C = await participant('p_c', 'carol', { selfIdAtStart: true });
  await C.cc.publish();
  check('publishing uploads the bundle before the join', dir.bundles.has('carol') && C.cc.sendKeyState() !== null);

  // Alice is alone in the room.
  await A.cc.start([]);
  await waitFor('alice seals with generation 0, step 0', () => sealing(A, 0, 0));
  check('alice seals under her sender index', A.fc.sealer.current.kid >> 16n === BigInt(A.cc.sendKeyState().senderIndex));
  const beforeBob = await frame(A, 'before bob');
  check('frames are encrypted (not the plaintext)', beforeBob && !td.decode(beforeBob).includes('before bob'));

  // Bob joins: alice advances, bob initiates.
  A.cc.onJoined(B.p);
  await B.cc.start([A.p]);
  await waitFor('alice and bob are encrypted with each other', () => encrypted(A, B) && encrypted(B, A));
  await waitFor('alice advanced to step 1 on the join', () => sealing(A, 0, 1));
  check('bob seals with generation 0, step 0', sealing(B, 0, 0));
  check('safety numbers agree', A.cc.safetyNumber(B.id) && A.cc.safetyNumber(B.id) === B.cc.safetyNumber(A.id), `${A.cc.safetyNumber(B.id)} / ${B.cc.safetyNumber(A.id)}`);
  check('safety number has 12 groups of 5 digits', /^(\d{5} ){11}\d{5}$/.test(A.cc.safetyNumber(B.id) || ''));
  check('fingerprints name the identities', A.cc.fingerprint(B.id) === B.identity.public.fingerprint && B.cc.fingerprint(A.id) === A.identity.public.fingerprint);
  check('bob decrypts alice', (await opens(B, await frame(A, 'hi bob'), A)) === 'hi bob');
  check('alice decrypts bob', (await opens(A, await frame(B, 'hi alice'), B)) === 'hi alice');
  check('bob cannot decrypt what alice sent before he joined', (await opens(B, beforeBob, A)) === null && B.fc.receiver.stats.unknown_kid === 1, JSON.stringify(B.fc.receiver.stats));
  check('no errors so far', errors(A).length + errors(B).length === 0, JSON.stringify([...errors(A), ...errors(B)]));

  // Carol joins: both advance. A frame of alice reaches carol before any key.
  const beforeCarol = await frame(A, 'before carol');
  A.cc.onJoined(C.p);
  B.cc.onJoined(C.p);
  await waitFor('alice advanced to step 2', () => sealing(A, 0, 2));
  await waitFor('bob advanced to step 1', () => sealing(B, 0, 1));
  const early = await frame(A, 'too early');
  check('a frame from a sender whose key has not arrived is awaiting_key', (await opens(C, early, A)) === null && C.fc.receiver.stats.awaiting_key === 1 && C.fc.receiver.stats.auth_failed === 0, JSON.stringify(C.fc.receiver.stats));
  await C.cc.start([A.p, B.p], C.id);
  await waitFor('carol is encrypted with alice and bob', () => encrypted(C, A) && encrypted(C, B) && encrypted(A, C) && encrypted(B, C));
  check('bob derives alice\'s advanced key himself', (await opens(B, await frame(A, 'step two'), A)) === 'step two');
  check('alice derives bob\'s advanced key herself', (await opens(A, await frame(B, 'bob step one'), B)) === 'bob step one');
  const fromA = await frame(A, 'to carol');
  check('carol decrypts alice', (await opens(C, fromA, A)) === 'to carol');
  check('carol decrypts bob', (await opens(C, await frame(B, 'bob to carol'), B)) === 'bob to carol');
  check('alice decrypts carol', (await opens(A, await frame(C, 'carol to alice'), C)) === 'carol to alice');
  check('carol decrypts the frame that came before her key, once it is there', (await opens(C, early, A)) === 'too early');
  check('carol cannot decrypt what alice sent before she joined', (await opens(C, beforeCarol, A)) === null && C.fc.receiver.stats.unknown_kid === 1, JSON.stringify(C.fc.receiver.stats));
  check('a replayed frame is dropped as replayed', (await opens(C, fromA, A)) === null && C.fc.receiver.stats.replayed === 1, JSON.stringify(C.fc.receiver.stats));
  const forged = (await frame(A, 'forged')).slice();
  forged[forged.length - 1] ^= 0x01;
  check('a forged frame is dropped as auth_failed', (await opens(C, forged, A)) === null && C.fc.receiver.stats.auth_failed === 1, JSON.stringify(C.fc.receiver.stats));
  check('a malformed frame is dropped as malformed', (await opens(C, Uint8Array.of(0x80), A)) === null && C.fc.receiver.stats.malformed === 1);
  check('the three safety numbers are pairwise consistent', A.cc.safetyNumber(C.id) === C.cc.safetyNumber(A.id) && B.cc.safetyNumber(C.id) === C.cc.safetyNumber(B.id) && A.cc.safetyNumber(C.id) !== A.cc.safetyNumber(B.id));
  C.fc.postStats();
  check('stats reach CallCrypto as decrypt_stats', C.events.some((e) => e.type === 'decrypt_stats' && e.stats.replayed === 1 && e.stats.awaiting_key === 1 && e.stats.byParticipant[A.id]));

  // Bob leaves: alice and carol start fresh chains and switch as soon as
  // the other acknowledged (the clocks stand still, so not by the delay).
  const bobLast = await frame(A, 'last for bob');
  check('bob still decrypts alice before he leaves', (await opens(B, bobLast, A)) === 'last for bob');
  A.cc.onLeft(B.p);
  C.cc.onLeft(B.p);
  await waitFor('alice switches to generation 1 on carol\'s ack', () => sealing(A, 1, 0));
  await waitFor('carol switches to generation 1 on alice\'s ack', () => sealing(C, 1, 0));
  const afterLeave = await frame(A, 'after bob left');
  // Bob holds alice's generation 0 only: to him the new chain is a key
  // that has not arrived (and never will).
  check('bob cannot decrypt alice after he left', (await opens(B, afterLeave, A)) === null && B.fc.receiver.stats.awaiting_key === 1 && B.fc.receiver.stats.decrypted === 3, JSON.stringify(B.fc.receiver.stats));
  check('carol decrypts alice\'s new chain', (await opens(C, afterLeave, A)) === 'after bob left');
  check('alice decrypts carol\'s new chain', (await opens(A, await frame(C, 'carol gen 1'), C)) === 'carol gen 1');
  check('carol\'s new chain was reported', A.events.some((e) => e.type === 'peer_key_changed' && e.participantId === C.id && e.generation === 1));
  check('bob\'s keys are gone from the others\' frame crypto', !A.fc.receiver.hasKeys(B.id) && !C.fc.receiver.hasKeys(B.id));
  check('no errors in the three calls', errors(A).length + errors(B).length + errors(C).length === 0, JSON.stringify([...errors(A), ...errors(B), ...errors(C)]));

  // Someone joins as "bob" with another identity key: alice must not
  // accept it silently.
  const B2 = await participant('p_b2', 'bob');
  A.cc.onJoined(B2.p);
  C.cc.onJoined(B2.p);
  // Carol has seen bob before as well; to check the accepted path only on
  // alice, carol's record of bob is dropped (a first contact for her).
  C.cc.trustStore.set('bob', { fingerprint: B2.identity.public.fingerprint, verified: false });
  await B2.cc.start([A.p, C.p]);
  await waitFor('alice reports identity_changed for bob', () => A.events.some((e) => e.type === 'identity_changed' && e.participantId === B2.id && e.knownFingerprint === B.identity.public.fingerprint && e.newFingerprint === B2.identity.public.fingerprint));
  await waitFor('carol and the new bob are encrypted', () => encrypted(C, B2) && encrypted(B2, C));
  check('alice sent the new bob no key', !B2.fc.receiver.hasKeys(A.id) && !encrypted(A, B2));
  check('alice installed none of the new bob\'s keys', !A.fc.receiver.hasKeys(B2.id));
  check('alice drops the new bob\'s frames as identity_unverified', (await opens(A, await frame(B2, 'let me in'), B2)) === null && A.fc.receiver.stats.identity_unverified === 1);
  check('alice shows no safety number for the changed identity', A.cc.safetyNumber(B2.id) === null);
  check('the new bob awaits alice\'s key', (await opens(B2, await frame(A, 'secret'), A)) === null && B2.fc.receiver.stats.awaiting_key >= 1);
  await A.cc.acceptIdentityChange(B2.id);
  await waitFor('after acceptance alice and the new bob are encrypted', () => encrypted(A, B2) && encrypted(B2, A));
  check('alice now decrypts the new bob', (await opens(A, await frame(B2, 'accepted'), B2)) === 'accepted');
  check('the new bob decrypts alice', (await opens(B2, await frame(A, 'welcome'), A)) === 'welcome');
  check('alice\'s trust store holds the accepted key', A.cc.trustStore.get('bob').fingerprint === B2.identity.public.fingerprint);
  await A.cc.setVerified(B2.id, true);
  check('setVerified records the verification', A.cc.trustStore.get('bob').verified === true);
  check('no errors after the identity change', errors(A).length + errors(C).length + errors(B2).length === 0, JSON.stringify([...errors(A), ...errors(C), ...errors(B2)]));

  // A late worker gets the current keys.
  const late = new FrameCrypto({ statsIntervalMs: 0 });
  const lateWorker = pageWorker(late);
  A.cc.attachWorker(lateWorker);
  await late.handleMessage({ type: 'noop' });
  check('a worker attached late can seal and open', (await opens({ fc: late }, await frame(C, 'late'), C)) === 'late' && late.sealer.ready);

  // The new bob leaves while carol's envelopes to alice are held back:
  // neither gets the other's ack, so each switches when its delay passed.
  net.sever(C.id, A.id);
  A.cc.onLeft(B2.p);
  C.cc.onLeft(B2.p);
  await waitFor('alice has a pending chain', () => A.cc.sendKeyState() && A.cc._sender.pendingUntil !== null);
  await waitFor('carol has a pending chain', () => C.cc._sender.pendingUntil !== null);
  await A.cc.tick();
  check('without an ack alice keeps the old key before the delay', sealing(A, 1, 1), `${A.fc.sealer.current.generation}/${A.fc.sealer.current.step}`);
  A.clock.t += 1000;
  C.clock.t += 1000;
  await A.cc.tick();
  await C.cc.tick();
  await waitFor('alice switches to generation 2 after the delay', () => sealing(A, 2, 0));
  await waitFor('carol switches to generation 2 after the delay', () => sealing(C, 2, 0));
  const awaiting = A.fc.receiver.stats.awaiting_key;
  check('alice cannot open carol\'s new chain before its key arrives: awaiting_key', (await opens(A, await frame(C, 'held back'), C)) === null && A.fc.receiver.stats.awaiting_key === awaiting + 1, JSON.stringify(A.fc.receiver.stats));
  check('carol opens alice\'s new chain', (await opens(C, await frame(A, 'gen 2'), A)) === 'gen 2');
  net.restore(C.id, A.id);
  await waitFor('alice gets carol\'s generation 2', () => A.events.some((e) => e.type === 'peer_key_changed' && e.participantId === C.id && e.generation === 2));
  check('alice opens carol\'s new chain', (await opens(A, await frame(C, 'released'), C)) === 'released');

  // Two callers who each believe the other was there first both initiate
  // (§4.2): the session of the lower identity is kept, and both end up
  // keyed with each other.
  const D = await participant('p_d', 'dave');
  const E = await participant('p_e', 'erin');
  await Promise.all([D.cc.publish(), E.cc.publish()]);
  await Promise.all([D.cc.start([E.p]), E.cc.start([D.p])]);
  await waitFor('simultaneous initiators end up encrypted with each other', () => encrypted(D, E) && encrypted(E, D));
  check('and hear each other', (await opens(E, await frame(D, 'd to e'), D)) === 'd to e' && (await opens(D, await frame(E, 'e to d'), E)) === 'e to d');
  check('with one session: the lower identity\'s', D.cc._peers.get(E.id).session.initiator !== E.cc._peers.get(D.id).session.initiator &&
    D.cc._peers.get(E.id).session.initiator === D.identity.public.compare(E.identity.public) < 0);
  check('no errors for simultaneous initiators', errors(D).length + errors(E).length === 0, JSON.stringify([...errors(D), ...errors(E)]));

  // A newcomer that never initiates (as if its fetch of our bundle had
  // failed) still gets a session: the present participant starts one.
  const F = await participant('p_f', 'frank');
  await F.cc.start([], F.id);
  D.cc.onJoined(F.p);
  F.cc.onJoined(D.p); // F only learns of D, as a participant joining later
  await waitFor('a present participant initiates when the newcomer does not', () => encrypted(D, F) && encrypted(F, D), 20000);
  check('and they hear each other', (await opens(F, await frame(D, 'd to f'), D)) === 'd to f' && (await opens(D, await frame(F, 'f to d'), F)) === 'f to d');

  for (const x of [A, B, C, B2, D, E, F]) {
    x.cc.close();
    x.fc.close();
  }
  late.close();
  check('envelopes were exchanged', net.sent > 0, String(net.sent));
}

main()
  .catch((e) => results.push({ group: 'callflow', name: 'run', ok: false, error: String(e && e.stack ? e.stack : e) }))
  .finally(() => {
    const failed = results.filter((r) => !r.ok);
    document.getElementById('out').textContent = `${results.length - failed.length}/${results.length} passed\n` + failed.map((r) => `FAIL ${r.name}: ${r.error}`).join('\n');
    window.callflowResults = { done: true, results };
  });
