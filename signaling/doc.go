// Package signaling is Sotto's control plane: the versioned HTTP and
// WebSocket API through which participants join rooms with signed tokens,
// exchange SDP and ICE candidates with the media relay, relay opaque
// end-to-end envelopes to each other and publish and fetch prekey bundles.
//
// The server sees who talks to whom, sizes and times; it never sees content.
// This package must never import e2ee.
package signaling
