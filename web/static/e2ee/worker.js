// The encoded-transform worker: encrypts the outgoing Opus frames and
// decrypts the incoming ones (FrameCrypto), with keys posted by CallCrypto
// on the main thread. Start it with transform.js's createWorker().
//
// Both browser APIs end up in FrameCrypto.attach: RTCRtpScriptTransform
// fires rtctransform here; the createEncodedStreams fallback posts the
// stream pair in a 'stream' message.

import { FrameCrypto } from './framecrypto.js';

const fc = new FrameCrypto({ post: (m) => self.postMessage(m) });

self.onmessage = (e) => {
  fc.handleMessage(e.data);
};

self.onrtctransform = (e) => {
  const t = e.transformer;
  fc.attach(t.readable, t.writable, t.options || {});
};
