// Package aiortc checks Sotto's native API (docs/API.md) against a WebRTC
// stack that is neither pion nor a browser: Python's aiortc (Debian
// package python3-aiortc). Its test builds the sotto binary, runs a real
// "sotto serve", and drives client.py, a participant written from the
// documentation alone, next to Go SDK callers: join, the event stream,
// renegotiation as callers come, go and take over a transceiver, every
// documented refusal, listen-only participants and leave. See README.md.
//
// The package has no code of its own; everything is in its test and in
// client.py.
package aiortc
