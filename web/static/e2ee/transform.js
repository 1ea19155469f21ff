// Main-thread glue between RTCPeerConnection and the encryption worker:
// attaches the worker to an RTCRtpSender / RTCRtpReceiver with
// RTCRtpScriptTransform where the browser has it, and with
// createEncodedStreams otherwise (then the peer connection must be created
// with peerConnectionConfig(), which asks for encoded insertable streams).
//
//   const worker = createWorker();
//   cc.attachWorker(worker);                       // keys flow to it
//   const pc = new RTCPeerConnection(peerConnectionConfig({iceServers}));
//   attachSender(pc.addTransceiver(track, {direction: 'sendonly'}).sender, worker);
//   pc.ontrack = (e) => attachReceiver(e.receiver, worker, e.streams[0].id);
//
// The worker finds a frame's key by the SFrame KID; the participant id
// given for a receiver names the publisher whose keys its frames must be
// sealed with (others are dropped as wrong_sender) and labels its
// counters. Call attachReceiver again when a reused transceiver carries
// another publisher: it relabels the same stream.

let nextStreamId = 1;
const attached = new WeakMap(); // sender/receiver -> streamId
let forceEncodedStreams = false;

/** Whether RTCRtpScriptTransform will be used (the browser has it, and
 *  useEncodedStreams did not ask for the fallback). */
export function hasScriptTransform() {
  return !forceEncodedStreams && typeof RTCRtpScriptTransform !== 'undefined';
}

/** Selects the createEncodedStreams fallback even where
 *  RTCRtpScriptTransform exists (tests exercise both paths). Call it
 *  before creating the peer connection. */
export function useEncodedStreams(on) {
  forceEncodedStreams = !!on;
}

/** config plus what the createEncodedStreams fallback needs. */
export function peerConnectionConfig(config = {}) {
  return hasScriptTransform() ? { ...config } : { ...config, encodedInsertableStreams: true };
}

/** Starts the encryption worker (a module worker next to this file). */
export function createWorker() {
  return new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'sotto-e2ee' });
}

function attach(endpoint, worker, direction, participantId) {
  const known = attached.get(endpoint);
  if (known !== undefined) {
    if (participantId !== undefined) worker.postMessage({ type: 'label', streamId: known, participantId });
    return known;
  }
  const streamId = nextStreamId++;
  attached.set(endpoint, streamId);
  const options = { direction, streamId, participantId };
  if (hasScriptTransform()) {
    endpoint.transform = new RTCRtpScriptTransform(worker, options);
  } else if (typeof endpoint.createEncodedStreams === 'function') {
    const { readable, writable } = endpoint.createEncodedStreams();
    worker.postMessage({ type: 'stream', ...options, readable, writable }, [readable, writable]);
  } else {
    throw new Error('this browser has neither RTCRtpScriptTransform nor createEncodedStreams: calls cannot be encrypted');
  }
  return streamId;
}

/** Encrypts everything rtpSender sends. Returns the stream id. */
export function attachSender(rtpSender, worker) {
  return attach(rtpSender, worker, 'send');
}

/** Decrypts everything rtpReceiver receives from participantId, the
 *  publisher of its track. Returns the stream id. */
export function attachReceiver(rtpReceiver, worker, participantId) {
  return attach(rtpReceiver, worker, 'recv', participantId);
}
