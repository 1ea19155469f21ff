// Package turn embeds a TURN server (pion/turn) so callers behind strict NATs
// and firewalls can still reach the relay, with short-lived credentials in
// the TURN REST convention and a relay policy that refuses loopback, private
// and other special-purpose destinations.
//
// NewServer starts TURN over UDP and TCP on one port (and TLS when given a
// certificate). Credentials and ICEServersFor mint what a participant gets in
// its join response; Denied is the default peer policy, documented range by
// range in POLICY.md next to this file.
//
// This package must never import e2ee.
package turn
