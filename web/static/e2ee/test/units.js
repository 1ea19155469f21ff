// Unit tests of the e2ee modules' limits and error paths, mirroring the
// Go package's tests: ratchet bounds and clock, frame-key chains, the
// receiver's key ring, replay window and grace period, prekeys and
// identities. Results: window.unitResults = {done, results: [{group,
// name, ok, error}]}; web/e2ee_test.go drives this page in Chromium.

import { concat, fromBase64, randomBytes, toBase64, u32, utf8 } from '../bytes.js';
import { encodeFrameKey, parseFrameKey, parsePayload } from '../envelope.js';
import { FrameReceiver, FrameSealer, FrameSender, MAX_RATCHET_AHEAD, kidOf } from '../framekeys.js';
import { FrameCrypto } from '../framecrypto.js';
import { PrivateIdentity, PublicIdentity, formatFingerprint } from '../identity.js';
import { MAX_SKIP, MAX_SKIPPED_KEYS, SKIPPED_KEY_LIFETIME_MS } from '../ratchet.js';
import { SFrameKey, decodeHeader, encodeHeader, ratchetBaseKey } from '../sframe.js';
import { MemoryTrustStore, StorageTrustStore, loadOrCreateIdentity } from '../truststore.js';
import { defaultKem, nobleKem, webCryptoKem } from '../mlkem.js';
import { KEM_PREKEY_LABEL, PrekeyStore, acceptSession, bundleFromJSON, initiateSession } from '../pqxdh.js';

const results = [];
window.unitResults = { done: false, results };
const td = new TextDecoder();
const T0 = Date.UTC(2026, 0, 1);

async function test(name, fn) {
  try {
    await fn();
    results.push({ group: 'units', name, ok: true });
  } catch (e) {
    results.push({ group: 'units', name, ok: false, error: String(e && e.stack ? e.stack : e) });
  }
}

function assert(cond, what) {
  if (!cond) throw new Error(what);
}

async function rejects(p, code, what) {
  try {
    await p;
  } catch (e) {
    if (code && e.code !== code) throw new Error(`${what}: error ${e.code} (${e.message}), want ${code}`);
    return;
  }
  throw new Error(`${what}: no error`);
}

/** The api.PrekeyBundle JSON the directory makes of an upload, with its
 *  first one-time prekey of each kind if oneTime. */
function bundleJSON(up, oneTime) {
  const b = { identity_key: up.identity_key, signed_prekey: up.signed_prekey, kem_prekey: up.kem_prekey };
  if (oneTime) {
    b.one_time_prekey = up.one_time_prekeys[0];
    b.one_time_kem_prekey = up.one_time_kem_prekeys[0];
  }
  return b;
}

/** Alice and Bob with a session: alice initiated, bob accepted her first
 *  message. */
async function pair() {
  const a = await PrivateIdentity.generate();
  const b = await PrivateIdentity.generate();
  const store = await PrekeyStore.create(b);
  const upload = await store.uploadJSON(1);
  const bundle = bundleFromJSON(bundleJSON(upload, true));
  const as = await initiateSession(a, bundle);
  const first = await as.encrypt(utf8('hello'));
  const { session: bs, plaintext } = await acceptSession(store, first, T0);
  assert(td.decode(plaintext) === 'hello', 'first message');
  return { a, b, store, as, bs, first };
}

const dec = async (s, p, now = T0) => td.decode(await s.decrypt(p, now));

async function ratchet() {
  await test('ratchet: messages both ways, out of order, across DH steps', async () => {
    const { as, bs } = await pair();
    const m = [];
    for (let i = 0; i < 4; i++) m.push(await as.encrypt(utf8(`a${i}`)));
    assert((await dec(bs, m[3])) === 'a3' && (await dec(bs, m[1])) === 'a1', 'out of order');
    const r = await bs.encrypt(utf8('b0'));
    assert(parsePayload(r).type === 2, 'responder sends ratchet messages');
    assert((await dec(as, r)) === 'b0', 'reply');
    assert(parsePayload(await as.encrypt(utf8('x'))).type === 2, 'initiator switches to ratchet once answered');
    assert((await dec(bs, m[0])) === 'a0' && (await dec(bs, m[2])) === 'a2', 'skipped keys from an older chain');
  });
  await test('ratchet: a message decrypts once', async () => {
    const { as, bs } = await pair();
    const m = await as.encrypt(utf8('once'));
    assert((await dec(bs, m)) === 'once', 'first');
    await rejects(bs.decrypt(m, T0), 'decrypt', 'replay');
  });
  await test('ratchet: a tampered message fails and leaves the session unchanged', async () => {
    const { as, bs } = await pair();
    const m1 = await as.encrypt(utf8('one'));
    const m2 = await as.encrypt(utf8('two'));
    const bad = m2.slice();
    bad[bad.length - 1] ^= 1;
    await rejects(bs.decrypt(bad, T0), 'decrypt', 'tampered');
    assert(bs.skippedKeys === 0, `skipped keys kept after a failure: ${bs.skippedKeys}`);
    assert((await dec(bs, m2)) === 'two' && (await dec(bs, m1)) === 'one', 'later messages');
  });
  await test(`ratchet: more than MAX_SKIP (${MAX_SKIP}) skipped keys are refused`, async () => {
    const { as, bs } = await pair();
    assert((await dec(as, await bs.encrypt(utf8('answer')))) === 'answer', 'answer');
    // Forge the header's n: the skip check happens before authentication.
    const m = await as.encrypt(utf8('far'));
    assert(parsePayload(m).type === 2, 'a ratchet message');
    const far = m.slice();
    new DataView(far.buffer).setUint32(2 + 36, MAX_SKIP + 5);
    await rejects(bs.decrypt(far, T0), 'too_many_skipped', 'far ahead');
    assert((await dec(bs, m)) === 'far', 'the real message still decrypts');
  });
  await test('ratchet: skipped keys expire after 10 minutes (clock injected)', async () => {
    const { as, bs } = await pair();
    const late = await as.encrypt(utf8('late'));
    assert((await dec(bs, await as.encrypt(utf8('next')))) === 'next', 'next');
    assert(bs.skippedKeys === 1, `one skipped key, got ${bs.skippedKeys}`);
    await rejects(bs.decrypt(late, T0 + SKIPPED_KEY_LIFETIME_MS + 1), 'decrypt', 'expired skipped key');
    const again = await as.encrypt(utf8('late2'));
    const skipped = await as.encrypt(utf8('x'));
    assert((await dec(bs, skipped, T0)) === 'x', 'x');
    assert((await dec(bs, again, T0 + SKIPPED_KEY_LIFETIME_MS)) === 'late2', 'a key exactly 10 minutes old still works');
  });
  await test(`ratchet: at most ${MAX_SKIPPED_KEYS} skipped keys are stored, oldest dropped`, async () => {
    const { as, bs } = await pair();
    const first = await as.encrypt(utf8('first'));
    const batch = [];
    for (let i = 0; i < 3; i++) {
      // Three jumps of 700: 2100 skipped in total, beyond the store's bound.
      for (let j = 0; j < 699; j++) await as.encrypt(utf8(''));
      batch.push(await as.encrypt(utf8(`jump${i}`)));
      assert((await dec(bs, batch[i])) === `jump${i}`, `jump ${i}`);
    }
    assert(bs.skippedKeys === MAX_SKIPPED_KEYS, `stored ${bs.skippedKeys}`);
    await rejects(bs.decrypt(first, T0), 'decrypt', 'the oldest skipped key was dropped');
  });
  await test('pqxdh: a replayed pqxdh-init cannot start a second session', async () => {
    const { store, first } = await pair();
    await rejects(acceptSession(store, first, T0), 'replayed_init', 'replay');
  });
  await test('pqxdh: unknown signed or one-time prekeys are refused', async () => {
    const a = await PrivateIdentity.generate();
    const b = await PrivateIdentity.generate();
    const store = await PrekeyStore.create(b);
    const up = await store.uploadJSON(1);
    const other = await PrekeyStore.create(b);
    const ou = await other.uploadJSON(1);
    const s1 = await initiateSession(a, bundleFromJSON({ ...ou, one_time_prekey: ou.one_time_prekeys[0] }));
    await rejects(acceptSession(store, await s1.encrypt(utf8('x')), T0), 'unknown_prekey', 'foreign signed prekey');
    const s2 = await initiateSession(a, bundleFromJSON({ ...up, one_time_prekey: { id: 12345, key: up.one_time_prekeys[0].key } }));
    await rejects(acceptSession(store, await s2.encrypt(utf8('x')), T0), 'unknown_prekey', 'unknown one-time prekey');
  });
  await test('pqxdh: bundles with bad signatures or sizes are refused', async () => {
    const a = await PrivateIdentity.generate();
    const b = await PrivateIdentity.generate();
    const up = await (await PrekeyStore.create(b)).uploadJSON(0);
    const sig = fromBase64(up.signed_prekey.signature);
    sig[3] ^= 1;
    await rejects(initiateSession(a, bundleFromJSON({ ...up, signed_prekey: { ...up.signed_prekey, signature: toBase64(sig) } })), 'bad_signature', 'signature');
    await rejects(initiateSession(a, bundleFromJSON({ ...up, signed_prekey: { ...up.signed_prekey, id: up.signed_prekey.id + 1 } })), 'bad_signature', 'id bound');
    await rejects(initiateSession(a, bundleFromJSON({ ...up, identity_key: toBase64(randomBytes(32)) })), 'invalid', 'short identity');
    const s = await initiateSession(a, bundleFromJSON(up));
    assert(parsePayload(await s.encrypt(utf8('no opk'))).body[164] === 0, 'no one-time prekey flag');
  });
  await test('pqxdh: the previous signed prekey still answers after a rotation', async () => {
    const a = await PrivateIdentity.generate();
    const b = await PrivateIdentity.generate();
    const store = await PrekeyStore.create(b);
    const up = await store.uploadJSON(0);
    const s = await initiateSession(a, bundleFromJSON(up));
    await store.rotateSignedPrekey();
    const { plaintext } = await acceptSession(store, await s.encrypt(utf8('old spk')), T0);
    assert(td.decode(plaintext) === 'old spk', 'accepted');
  });
  await pqxdh();
}

/** A copy of an upload's KEM prekey JSON, damaged by fn(key, signature). */
function damagedKem(k, fn) {
  const key = fromBase64(k.key);
  const signature = fromBase64(k.signature);
  const out = { id: k.id, key, signature };
  fn(out);
  return { id: out.id, key: toBase64(out.key), signature: toBase64(out.signature) };
}

async function pqxdh() {
  await test('pqxdh: the page uses the browser\'s ML-KEM-768 (WebCrypto)', async () => {
    assert(await webCryptoKem(), 'this browser has no WebCrypto ML-KEM-768');
    assert((await defaultKem()).name === 'webcrypto', `default backend ${(await defaultKem()).name}`);
  });
  await test('pqxdh: a bundle without a valid signed KEM prekey is refused', async () => {
    const a = await PrivateIdentity.generate();
    const b = await PrivateIdentity.generate();
    const mallory = await PrivateIdentity.generate();
    const up = await (await PrekeyStore.create(b)).uploadJSON(1);
    const good = bundleJSON(up, true);
    const bad = (fn) => damagedKem(up.kem_prekey, fn);
    const invalid = new Uint8Array(1184).fill(0xff); // coefficients out of range
    const byMallory = await mallory.sign(KEM_PREKEY_LABEL, u32(up.kem_prekey.id), fromBase64(up.kem_prekey.key));
    const cases = [
      ['missing', { ...good, kem_prekey: undefined, one_time_kem_prekey: undefined }, 'no_kem_prekey'],
      ['missing, one-time offered', { ...good, kem_prekey: undefined }, 'no_kem_prekey'],
      ['signature', { ...good, kem_prekey: bad((k) => (k.signature[5] ^= 1)) }, 'bad_signature'],
      ['key', { ...good, kem_prekey: bad((k) => (k.key[700] ^= 1)) }, 'bad_signature'],
      ['id bound', { ...good, kem_prekey: bad((k) => (k.id += 1)) }, 'bad_signature'],
      ['short', { ...good, kem_prekey: bad((k) => (k.key = k.key.subarray(0, 1183))) }, 'no_kem_prekey'],
      ['signed by another identity', { ...good, kem_prekey: bad((k) => (k.signature = byMallory)) }, 'bad_signature'],
      ['one-time signature', { ...good, one_time_kem_prekey: damagedKem(up.one_time_kem_prekeys[0], (k) => (k.signature[0] ^= 1)) }, 'bad_signature'],
      // Signed by the identity, but not an ML-KEM-768 key.
      ['invalid key', { ...good, one_time_kem_prekey: undefined, kem_prekey: { id: 7, key: toBase64(invalid), signature: toBase64(await b.sign(KEM_PREKEY_LABEL, u32(7), invalid)) } }, 'no_kem_prekey'],
    ];
    for (const [name, j, code] of cases) await rejects(initiateSession(a, bundleFromJSON(j)), code, name);
  });
  await test('pqxdh: one-time KEM prekeys are used when offered, then deleted; the last-resort one otherwise', async () => {
    const a = await PrivateIdentity.generate();
    const store = await PrekeyStore.create(await PrivateIdentity.generate());
    const up = await store.uploadJSON(2);
    for (const oneTime of [true, false]) {
      const before = store.oneTimeKemPrekeyCount;
      const s = await initiateSession(a, bundleFromJSON(bundleJSON(up, oneTime)));
      const first = await s.encrypt(utf8('hi'));
      const kemId = new DataView(first.buffer).getUint32(2 + 169);
      assert(kemId === (oneTime ? up.one_time_kem_prekeys[0].id : up.kem_prekey.id), `kem_id ${kemId}`);
      const { session } = await acceptSession(store, first, T0);
      assert(s.lastResortKem === !oneTime && session.lastResortKem === !oneTime, `last-resort flags ${s.lastResortKem}/${session.lastResortKem}`);
      assert(before - store.oneTimeKemPrekeyCount === (oneTime ? 1 : 0), `${before - store.oneTimeKemPrekeyCount} one-time KEM prekeys deleted`);
      // A replay is refused, whichever KEM prekey it used.
      await rejects(acceptSession(store, first, T0), 'replayed_init', `replay (one-time ${oneTime})`);
    }
    // The used one-time KEM prekey is gone.
    const again = await initiateSession(a, bundleFromJSON({ ...bundleJSON(up, false), one_time_kem_prekey: up.one_time_kem_prekeys[0] }));
    await rejects(acceptSession(store, await again.encrypt(utf8('x')), T0), 'unknown_prekey', 'used one-time KEM prekey');
  });
  await test('pqxdh: the same initial message accepted twice at once starts one session', async () => {
    const a = await PrivateIdentity.generate();
    const store = await PrekeyStore.create(await PrivateIdentity.generate());
    const up = await store.uploadJSON(0);
    const first = await (await initiateSession(a, bundleFromJSON(bundleJSON(up, false)))).encrypt(utf8('x'));
    const r = await Promise.allSettled([acceptSession(store, first, T0), acceptSession(store, first, T0)]);
    assert(r.filter((x) => x.status === 'fulfilled').length === 1, `${r.map((x) => x.status)}`);
    assert(r.some((x) => x.status === 'rejected' && x.reason.code === 'replayed_init'), 'no replayed_init');
  });
  await test('pqxdh: the previous last-resort KEM prekey answers after a rotation, is zeroed after the next', async () => {
    const a = await PrivateIdentity.generate();
    const store = await PrekeyStore.create(await PrivateIdentity.generate());
    const bundle = bundleFromJSON(bundleJSON(await store.uploadJSON(0), false));
    const seed = store._kemPrekey.seed;
    await store.rotateKemPrekey();
    const s = await initiateSession(a, bundle);
    assert(td.decode((await acceptSession(store, await s.encrypt(utf8('old kem')), T0)).plaintext) === 'old kem', 'previous KEM prekey');
    await store.rotateKemPrekey();
    assert(seed.every((x) => x === 0), 'KEM seed two rotations old not zeroed');
    const s2 = await initiateSession(a, bundle);
    await rejects(acceptSession(store, await s2.encrypt(utf8('x')), T0), 'unknown_prekey', 'two rotations old');
    store.close();
  });
  await test('pqxdh: the WebCrypto and the vendored ML-KEM-768 interoperate', async () => {
    const backends = [await webCryptoKem(), await nobleKem()];
    for (const init of backends) {
      for (const resp of backends) {
        const a = await PrivateIdentity.generate();
        const store = await PrekeyStore.create(await PrivateIdentity.generate(), randomBytes, resp);
        const s = await initiateSession(a, bundleFromJSON(bundleJSON(await store.uploadJSON(1), true)), randomBytes, init);
        const { session, plaintext } = await acceptSession(store, await s.encrypt(utf8('pq')), T0);
        assert(td.decode(plaintext) === 'pq', `${init.name} -> ${resp.name}`);
        assert(td.decode(await s.decrypt(await session.encrypt(utf8('back')), T0)) === 'back', `${resp.name} -> ${init.name}`);
      }
    }
  });
}

async function identities() {
  await test('identity: private form round trip, fingerprint format', async () => {
    const id = await PrivateIdentity.generate();
    const back = await PrivateIdentity.fromBytes(id.toBytes());
    assert(back.public.equals(id.public) && back.public.fingerprint === id.public.fingerprint, 'round trip');
    assert(/^[0-9a-f]{64}$/.test(id.public.fingerprint), 'fingerprint');
    assert(/^([0-9a-f]{4} ){15}[0-9a-f]{4}$/.test(formatFingerprint(id.public.fingerprint)), 'display');
    await rejects(PrivateIdentity.fromBytes(concat(Uint8Array.of(2), id.toBytes().subarray(1))), 'invalid', 'version');
    await rejects(PublicIdentity.parse(id.public.bytes.subarray(0, 127)), 'invalid', 'length');
  });
  await test('trust stores: memory and Web Storage; identity persistence', async () => {
    const m = new MemoryTrustStore();
    m.set('bob', { fingerprint: 'ab', verified: true });
    assert(m.get('bob').verified && m.get('carol') === undefined, 'memory');
    const s = new StorageTrustStore(sessionStorage, 'unit');
    s.set('bob', { fingerprint: 'cd', verified: false });
    assert(s.get('bob').fingerprint === 'cd' && new StorageTrustStore(sessionStorage, 'other').get('bob') === undefined, 'storage prefix');
    const a = await loadOrCreateIdentity(sessionStorage, 'unit');
    const b = await loadOrCreateIdentity(sessionStorage, 'unit');
    assert(a.public.equals(b.public), 'the same identity is loaded back');
  });
}

async function frames() {
  const key = (gen = 0, step = 0, suite = 4) => ({ suite, senderIndex: 0x11223344, generation: gen, step, baseKey: randomBytes(suite === 5 ? 64 : 32) });
  await test('sframe: header round trip at the 64-bit edges; truncated headers do not parse', async () => {
    for (const [k, c] of [[0n, 0n], [7n, 7n], [8n, 8n], [(1n << 48n) - 1n, 255n], [(1n << 64n) - 1n, (1n << 64n) - 1n]]) {
      const h = encodeHeader(k, c);
      const d = decodeHeader(h);
      assert(d.kid === k && d.ctr === c && d.length === h.length, `${k}/${c}`);
    }
    assert(decodeHeader(Uint8Array.of(0x88, 1)) === null && decodeHeader(new Uint8Array(0)) === null, 'truncated');
  });
  await test('frame keys: encoding checks the suite and the key size', async () => {
    const k = key();
    const enc = encodeFrameKey(k);
    assert(enc.length === 44, `length ${enc.length}`);
    const bad = enc.slice();
    bad[2] = 9;
    let threw = false;
    try {
      parseFrameKey(bad);
    } catch (e) {
      threw = e.code === 'unknown_suite';
    }
    assert(threw, 'unknown suite refused');
    threw = false;
    try {
      parseFrameKey(enc.subarray(0, 43));
    } catch (e) {
      threw = e.code === 'invalid';
    }
    assert(threw, 'short key refused');
    assert(parseFrameKey(encodeFrameKey(key(0, 0, 5))).baseKey.length === 64, 'suite 5 has 64-byte keys');
  });
  await test('sender: advance, rekey without peers switches at once, exhaustion at step 255', async () => {
    const s = FrameSender.create();
    const k0 = s.current();
    const [k1] = await s.advance();
    assert(k1.step === 1 && k1.generation === 0, 'step 1');
    const next = await ratchetBaseKey(4, k0.baseKey);
    assert(next.every((x, i) => x === k1.baseKey[i]), 'advance is the SFrame ratchet');
    s.rekey(T0, []);
    assert(s.current().generation === 1 && s.current().step === 0 && s.pendingUntil === null, 'immediate switch');
    s.rekey(T0, ['p']);
    assert(s.current().generation === 1 && s.keys().length === 2, 'pending while waiting');
    assert(!s.acknowledge('q', { senderIndex: s.senderIndex, generation: 2, step: 0 }) && !s.acknowledge('p', { senderIndex: s.senderIndex, generation: 1, step: 0 }), 'wrong acks');
    const [c, p] = await s.advance();
    assert(c.step === 1 && p.step === 1 && p.generation === 2, 'a join advances both chains');
    assert(!s.maybeSwitch(T0 + 999) && s.maybeSwitch(T0 + 1000), 'switch after the delay');
    for (let i = 0; i < 254; i++) await s.advance();
    assert(s.current().step === 255, `step ${s.current().step}`);
    await rejects(s.advance(), 'chain_exhausted', 'step 256');
  });
  await test('receiver: ratchet forward up to 32 steps, not beyond', async () => {
    const s = FrameSender.create();
    const r = new FrameReceiver();
    await r.setKey('p', s.current(), T0);
    for (let i = 0; i < MAX_RATCHET_AHEAD; i++) await s.advance();
    const sealer = new FrameSealer();
    await sealer.setKey(s.current());
    const ok = await r.open(await sealer.seal(utf8('32 ahead')), T0, 'p');
    assert(ok.plaintext && td.decode(ok.plaintext) === '32 ahead', `32 steps: ${ok.drop}`);
    const s2 = FrameSender.create();
    const r2 = new FrameReceiver();
    await r2.setKey('p', s2.current(), T0);
    for (let i = 0; i <= MAX_RATCHET_AHEAD; i++) await s2.advance();
    await sealer.setKey(s2.current());
    assert((await r2.open(await sealer.seal(utf8('33 ahead')), T0, 'p')).drop === 'unknown_kid', '33 steps');
  });
  await test('receiver: replay window of 128 counters', async () => {
    const k = key();
    const r = new FrameReceiver();
    await r.setKey('p', k, T0);
    const sk = await SFrameKey.create(4, kidOf(k.senderIndex, 0, 0), k.baseKey);
    const open = async (ctr) => (await r.open(await sk.seal(BigInt(ctr), utf8(`f${ctr}`)), T0, 'p')).drop || 'ok';
    assert((await open(200)) === 'ok', '200');
    assert((await open(100)) === 'ok', '100 (within the window, out of order)');
    assert((await open(100)) === 'replayed', '100 again');
    assert((await open(73)) === 'ok' && (await open(72)) === 'replayed', 'the window is 128 wide: 73 in, 72 out');
    assert((await open(500)) === 'ok' && (await open(200)) === 'replayed', 'a jump forward drops the old window');
    const forged = (await sk.seal(600n, utf8('x'))).slice();
    forged[forged.length - 1] ^= 1;
    assert((await r.open(forged, T0, 'p')).drop === 'auth_failed' && (await open(600)) === 'ok', 'a forged frame does not move the window');
  });
  await test('receiver: older keys live a grace period after a newer one is used, then expire', async () => {
    const s = FrameSender.create();
    const r = new FrameReceiver({ gracePeriodMs: 1000 });
    const sealer = new FrameSealer();
    await r.setKey('p', s.current(), T0);
    await sealer.setKey(s.current());
    const old1 = await sealer.seal(utf8('old 1'));
    const old2 = await sealer.seal(utf8('old 2'));
    const nk = s.rekey(T0, []);
    await r.setKey('p', nk, T0);
    await sealer.setKey(nk);
    assert((await r.open(old1, T0, 'p')).plaintext, 'old key before any new frame');
    assert((await r.open(await sealer.seal(utf8('new')), T0 + 10, 'p')).plaintext, 'new key');
    assert((await r.open(old2, T0 + 1009, 'p')).plaintext, 'old key within the grace period');
    assert((await r.open(await (async () => old2)(), T0 + 1010, 'p')).drop === 'expired_key', 'old key after the grace period');
    await rejects(r.setKey('p', { ...s.keys()[0], generation: 0, step: 0, baseKey: randomBytes(32) }, T0 + 2000), 'stale_key', 'an older key after a newer one was used');
  });
  await test('receiver: sender index bound to one participant; a new index replaces the keys', async () => {
    const r = new FrameReceiver();
    const k = key();
    await r.setKey('p', k, T0);
    await rejects(r.setKey('q', key(), T0), 'sender_index_in_use', 'collision');
    const again = await r.setKey('p', k, T0);
    assert(again.generation === 0 && again.step === 0, 'the same key twice is acknowledged again');
    await rejects(r.setKey('p', { ...k, baseKey: randomBytes(32) }, T0), 'stale_key', 'other bytes under the same coordinates');
    await r.setKey('p', { ...key(), senderIndex: 99 }, T0);
    assert(r.participantOf(99) === 'p' && r.participantOf(k.senderIndex) === undefined, 'index replaced');
  });
  await test('receiver: a frame on another participant\'s track is dropped as wrong_sender and leaves the owner\'s window alone', async () => {
    const s = FrameSender.create();
    const r = new FrameReceiver();
    await r.setKey('alice', s.current(), T0);
    await r.setKey('bob', { ...key(), senderIndex: 7 }, T0);
    const sealer = new FrameSealer();
    await sealer.setKey(s.current());
    const f = await sealer.seal(utf8('alice speaks'));
    assert((await r.open(f, T0, 'bob')).drop === 'wrong_sender', 'on bob\'s track');
    const forged = f.slice();
    forged[forged.length - 1] ^= 1;
    assert((await r.open(forged, T0, 'bob')).drop === 'auth_failed', 'a forgery on bob\'s track stays auth_failed');
    const own = await r.open(f, T0, 'alice');
    assert(own.plaintext && td.decode(own.plaintext) === 'alice speaks' && own.participant === 'alice', `then on her own: ${own.drop}`);
    assert((await r.open(f, T0, 'bob')).drop === 'wrong_sender', 'moved after it played: still wrong_sender');
    await s.advance();
    await sealer.setKey(s.current());
    assert((await r.open(await sealer.seal(utf8('a step ahead')), T0, 'bob')).drop === 'wrong_sender', 'a later step on bob\'s track');
    assert(r.stats.wrong_sender === 3 && r.stats.decrypted === 1 && r.byParticipant.get('bob').wrong_sender === 3, JSON.stringify(r.stats));
  });
  await test('FrameCrypto: a blocked participant\'s frames moved onto another\'s track are not played', async () => {
    const fc = new FrameCrypto({ statsIntervalMs: 0 });
    const carol = key();
    fc.handleMessage({ type: 'recvKey', participantId: 'carol', key: carol });
    fc.handleMessage({ type: 'recvKey', participantId: 'bob', key: { ...key(), senderIndex: 7 } });
    await fc.handleMessage({ type: 'blocked', participantId: 'carol', blocked: true });
    const sealer = new FrameSealer();
    await sealer.setKey(carol);
    const f = await sealer.seal(utf8('carol, unverified'));
    assert((await fc.decryptFrame(f, 'carol')) === null, 'on her own track');
    assert((await fc.decryptFrame(f, 'bob')) === null, 'on bob\'s track');
    const st = fc.stats();
    assert(st.identity_unverified === 1 && st.wrong_sender === 1 && st.decrypted === 0 && st.byParticipant.bob.wrong_sender === 1, JSON.stringify(st));
    fc.close();
  });
  await test('receiver: at most 4 keys per sender', async () => {
    const s = FrameSender.create();
    const r = new FrameReceiver();
    const first = s.current();
    await r.setKey('p', first, T0);
    for (let g = 0; g < 4; g++) await r.setKey('p', s.rekey(T0, []), T0);
    const sealer = new FrameSealer();
    await sealer.setKey(first);
    assert((await r.open(await sealer.seal(utf8('gen 0')), T0, 'p')).drop === 'unknown_kid', 'the oldest key was evicted');
  });
  await test('every suite seals and opens through the receiver', async () => {
    for (const suite of [1, 2, 3, 4, 5]) {
      const k = key(0, 0, suite);
      const r = new FrameReceiver();
      await r.setKey('p', k, T0);
      const sealer = new FrameSealer();
      await sealer.setKey(k);
      const f = await sealer.seal(utf8(`suite ${suite}`));
      const out = await r.open(f, T0, 'p');
      assert(out.plaintext && td.decode(out.plaintext) === `suite ${suite}`, `suite ${suite}: ${out.drop}`);
      const bad = (await sealer.seal(utf8('forged'))).slice();
      bad[bad.length - 1] ^= 1;
      const drop = (await r.open(bad, T0, 'p')).drop;
      assert(drop === 'auth_failed', `suite ${suite} forged: ${drop}`);
    }
  });
  await test('empty frames pass as empty frames; nothing is sealed without a key', async () => {
    const fc = new FrameCrypto({ statsIntervalMs: 0 });
    assert((await fc.encryptFrame(utf8('audio'))) === null && fc.stats().unencrypted_dropped === 1, 'no key: dropped, not sent in clear');
    assert((await fc.encryptFrame(new Uint8Array(0))).length === 0, 'empty frame');
    assert((await fc.decryptFrame(new Uint8Array(0), 'p')).length === 0, 'empty frame in');
    const s = fc.stats();
    assert(s.decrypted === 0 && s.malformed === 0 && s.awaiting_key === 0, 'empty frames are not counted');
    fc.close();
  });
  await test('FrameCrypto: messages apply in order; the transform stream drops what fails', async () => {
    const fc = new FrameCrypto({ statsIntervalMs: 0 });
    const k = key();
    fc.handleMessage({ type: 'sendKey', key: k });
    fc.handleMessage({ type: 'recvKey', participantId: 'p', key: k });
    fc.handleMessage({ type: 'removeParticipant', participantId: 'p' });
    await fc.handleMessage({ type: 'recvKey', participantId: 'p', key: k });
    assert(fc.receiver.hasKeys('p'), 'install, remove, install: installed');
    const sealed = await fc.encryptFrame(utf8('through'));
    const ts = fc.transformStream('recv', 1, 'p');
    const w = ts.writable.getWriter();
    const out = [];
    const reading = (async () => {
      const rd = ts.readable.getReader();
      for (;;) {
        const { value, done } = await rd.read();
        if (done) return;
        out.push(td.decode(value.data));
      }
    })();
    const bad = sealed.slice();
    bad[bad.length - 1] ^= 1;
    for (const d of [bad, sealed, sealed]) await w.write({ data: d.slice().buffer });
    await w.close();
    await reading;
    assert(out.length === 1 && out[0] === 'through', `enqueued ${JSON.stringify(out)}`);
    const s = fc.stats();
    assert(s.auth_failed === 1 && s.replayed === 1 && s.decrypted === 1 && s.byParticipant.p.decrypted === 1, JSON.stringify(s));
    fc.close();
  });
}

async function main() {
  await identities();
  await ratchet();
  await frames();
}

main()
  .catch((e) => results.push({ group: 'units', name: 'run', ok: false, error: String(e && e.stack ? e.stack : e) }))
  .finally(() => {
    const failed = results.filter((r) => !r.ok);
    document.getElementById('out').textContent = `${results.length - failed.length}/${results.length} passed\n` + failed.map((r) => `FAIL ${r.name}: ${r.error}`).join('\n');
    window.unitResults = { done: true, results };
  });
