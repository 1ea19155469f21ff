// Package turn embeds a TURN server (pion/turn) so callers behind strict NATs
// and firewalls can still reach the relay, with short-lived credentials in
// the TURN REST convention and a relay policy that refuses loopback, private
// and other special-purpose destinations.
//
// This package must never import e2ee.
package turn
