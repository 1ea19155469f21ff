// Per-frame cost of the worker's crypto: window.benchFrames(suite, n)
// seals and opens n frames of 120 bytes (a 20 ms Opus frame at about
// 48 kbit/s) with FrameSealer and FrameReceiver and resolves to the
// milliseconds taken. web/e2ee_test.go's benchmark calls it.

import { randomBytes } from '../bytes.js';
import { FrameReceiver, FrameSealer } from '../framekeys.js';
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
window.benchReady = true;
