// Package loopback runs raw pion WebRTC peers for tests in which every peer
// and the relay run on 127.0.0.1: APIs whose ICE stays on loopback, and the
// steps any WebRTC client takes to join a Sotto call (a complete offer,
// POST join, the answer, the event stream, audio at the real pace).
package loopback
