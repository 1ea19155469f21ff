// Real WebRTC through the encryption worker: two peer connections in this
// page, the fake microphone's audio sent through attachSender and received
// through attachReceiver, each with its own worker (worker.js) fed keys as
// CallCrypto would. ?api=streams selects the createEncodedStreams
// fallback. Results: window.transformResults = {done, results: [{group,
// name, ok, error}], api}.

import { randomBytes } from '../bytes.js';
import { attachReceiver, attachSender, createWorker, hasScriptTransform, peerConnectionConfig, useEncodedStreams } from '../transform.js';

const results = [];
window.transformResults = { done: false, results };
const api = new URLSearchParams(location.search).get('api') || 'script';

function check(name, cond, detail = '') {
  results.push({ group: `transform.${api}`, name, ok: !!cond, error: cond ? '' : `failed ${detail}` });
  if (!cond) console.error('FAIL', name, detail);
}

/** A worker and the last stats it posted. */
function worker(name) {
  const w = createWorker();
  const state = { w, stats: null, errors: [] };
  w.addEventListener('message', (e) => {
    if (e.data.type === 'stats') state.stats = e.data.stats;
    if (e.data.type === 'error') {
      state.errors.push(e.data.message);
      console.warn(name, 'worker error', e.data.message);
    }
  });
  w.addEventListener('error', (e) => state.errors.push(e.message || 'worker failed to load'));
  return state;
}

async function waitFor(name, cond, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return check(name, true);
    if (Date.now() > end) return check(name, false, `(not within ${timeoutMs} ms)`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function inbound(pc) {
  for (const r of (await pc.getStats()).values()) if (r.type === 'inbound-rtp' && r.kind === 'audio') return r;
  return null;
}

async function main() {
  if (api === 'streams') {
    if (typeof RTCRtpSender === 'undefined' || typeof RTCRtpSender.prototype.createEncodedStreams !== 'function') {
      window.transformResults = { done: true, results, api, unsupported: true };
      return;
    }
    useEncodedStreams(true);
  }
  check('the selected API is in use', hasScriptTransform() === (api === 'script'));
  const sender = worker('sender');
  const receiver = worker('receiver');
  const key = { suite: 4, senderIndex: 0x0a0b0c0d, generation: 0, step: 0, baseKey: randomBytes(32) };
  sender.w.postMessage({ type: 'sendKey', key });
  receiver.w.postMessage({ type: 'recvKey', participantId: 'p_sender', key });

  const pc1 = new RTCPeerConnection(peerConnectionConfig());
  const pc2 = new RTCPeerConnection(peerConnectionConfig());
  pc1.onicecandidate = (e) => e.candidate && pc2.addIceCandidate(e.candidate);
  pc2.onicecandidate = (e) => e.candidate && pc1.addIceCandidate(e.candidate);
  const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  const tr = pc1.addTransceiver(mic.getAudioTracks()[0], { direction: 'sendonly' });
  attachSender(tr.sender, sender.w);
  const audio = new Audio();
  pc2.ontrack = (e) => {
    attachReceiver(e.receiver, receiver.w, 'p_sender');
    audio.srcObject = new MediaStream([e.track]);
    audio.play().catch((err) => console.warn('play:', err.message));
  };
  await pc1.setLocalDescription();
  await pc2.setRemoteDescription(pc1.localDescription);
  await pc2.setLocalDescription();
  await pc1.setRemoteDescription(pc2.localDescription);

  await waitFor('frames are encrypted and decrypted (>= 100 each)', () => sender.stats && receiver.stats && sender.stats.encrypted >= 100 && receiver.stats.decrypted >= 100);
  const s = receiver.stats;
  check('no frame failed while the key was right', s.auth_failed + s.malformed + s.unknown_kid + s.replayed + s.expired_key + s.awaiting_key === 0, JSON.stringify(s));
  check('counters are kept per participant', s.byParticipant.p_sender && s.byParticipant.p_sender.decrypted > 0);
  await waitFor('decrypted audio plays (audio energy received)', async () => {
    const r = await inbound(pc2);
    return r && r.totalAudioEnergy > 0;
  });

  // Without the sender's key the receiver drops everything as awaiting_key.
  // Stats arrive periodically, so count from the first report that shows the
  // removal took effect, not from a report that may predate it.
  receiver.w.postMessage({ type: 'removeParticipant', participantId: 'p_sender' });
  await waitFor('the removal takes effect', () => receiver.stats.awaiting_key > 0);
  const before = receiver.stats.decrypted;
  await waitFor('frames without a key are dropped as awaiting_key', () => receiver.stats.awaiting_key >= 50);
  check('and none is decrypted', receiver.stats.decrypted === before, `${before} -> ${receiver.stats.decrypted}`);

  // A wrong key for the same sender index: every frame fails to authenticate.
  receiver.w.postMessage({ type: 'recvKey', participantId: 'p_sender', key: { ...key, baseKey: randomBytes(32) } });
  await waitFor('frames under a wrong key are dropped as auth_failed', () => receiver.stats.auth_failed >= 50);
  const dec = receiver.stats.decrypted;
  await new Promise((r) => setTimeout(r, 300));
  check('no frame is decrypted under a wrong key', receiver.stats.decrypted === dec);
  check('no worker errors', sender.errors.length + receiver.errors.length === 0, JSON.stringify([...sender.errors, ...receiver.errors]));

  pc1.close();
  pc2.close();
  sender.w.terminate();
  receiver.w.terminate();
  mic.getTracks().forEach((t) => t.stop());
}

main()
  .catch((e) => check('run', false, String(e && e.stack ? e.stack : e)))
  .finally(() => {
    const failed = results.filter((r) => !r.ok);
    document.getElementById('out').textContent = `${api}: ${results.length - failed.length}/${results.length} passed\n` + failed.map((r) => `FAIL ${r.name}: ${r.error}`).join('\n');
    if (!window.transformResults.done) window.transformResults = { done: true, results, api };
  });
