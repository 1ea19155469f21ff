// Package pionlog routes the leveled logs of pion (WebRTC, ICE, DTLS, SRTP,
// TURN) into log/slog, with the one level mapping every Sotto component
// uses: the relay, the TURN server and the Go SDK.
package pionlog
