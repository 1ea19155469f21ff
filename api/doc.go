// Package api defines the JSON messages of Sotto's version 1 signaling API:
// the HTTP request and response bodies, the WebSocket event stream and the
// stable error codes. The server (package signaling) and the Go SDK (package
// client) both speak in these types, so the wire format lives in one place;
// docs/API.md describes the same messages for people writing other clients.
//
// Nothing here parses or produces end-to-end encrypted content: envelope
// payloads and prekey material are opaque bytes to this package.
package api
