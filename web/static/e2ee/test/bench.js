// Per-frame cost of the worker's crypto: window.benchFrames(suite, n)
// seals and opens n frames of 120 bytes (a 20 ms Opus frame at about
// 48 kbit/s) with FrameSealer and FrameReceiver and resolves to the
// milliseconds taken. Cost of a session: window.benchPQXDH(backend, n)
// runs n PQXDH initiations (each with its first message, a frame key) and
// n acceptances with the named ML-KEM backend ('webcrypto' or 'noble')
// and resolves to {uploadMs, initiateMs, respondMs} in total, uploadMs
// being the making of an upload with n one-time prekeys of each kind. web/e2ee_test.go's
// benchmarks call them.

import { randomBytes } from '../bytes.js';
import { FrameReceiver, FrameSealer } from '../framekeys.js';
import { PrivateIdentity } from '../identity.js';
import { nobleKem, webCryptoKem } from '../mlkem.js';
import { PrekeyStore, acceptSession, bundleFromJSON, initiateSession } from '../pqxdh.js';
import { suiteParams } from '../sframe.js';

window.benchFrames = async (suite, n) => {
  const key = { suite, senderIndex: 7, generation: 0, step: 0, baseKey: randomBytes(suiteParams(suite).nh) };
  const sealer = new FrameSealer();
  const receiver = new FrameReceiver();
  await sealer.setKey(key);
  await receiver.setKey('p', key, Date.now());
  const frame = randomBytes(120);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const r = await receiver.open(await sealer.seal(frame), Date.now(), 'p');
    if (!r.plaintext) throw new Error(`frame ${i} dropped: ${r.drop}`);
  }
  return performance.now() - t0;
};
window.benchPQXDH = async (backend, n) => {
  const kem = backend === 'noble' ? await nobleKem() : await webCryptoKem();
  if (!kem) throw new Error(`no ${backend} ML-KEM-768`);
  const alice = await PrivateIdentity.generate();
  const store = await PrekeyStore.create(await PrivateIdentity.generate(), randomBytes, kem);
  const tu = performance.now();
  const up = await store.uploadJSON(n);
  const uploadMs = performance.now() - tu;
  const bundles = up.one_time_prekeys.map((opk, i) =>
    bundleFromJSON({ identity_key: up.identity_key, signed_prekey: up.signed_prekey, one_time_prekey: opk, kem_prekey: up.kem_prekey, one_time_kem_prekey: up.one_time_kem_prekeys[i] }),
  );
  const frameKey = randomBytes(44);
  const inits = [];
  const t0 = performance.now();
  for (const b of bundles) inits.push(await (await initiateSession(alice, b, randomBytes, kem)).encrypt(frameKey));
  const t1 = performance.now();
  for (const m of inits) await acceptSession(store, m, Date.now());
  const t2 = performance.now();
  return { uploadMs, initiateMs: t1 - t0, respondMs: t2 - t1 };
};
window.benchReady = true;
