// Package ice is the relay's ICE-lite agent (RFC 8445 section 2.5): it
// answers the connectivity checks of full agents, the STUN Binding
// requests of RFC 8489 carrying ICE's short-term credentials, and writes
// the host candidates the relay offers. A lite agent never sends checks of
// its own: the client, always a full agent, probes the relay's candidates
// and nominates the pair to use (USE-CANDIDATE); its later checks keep
// consent to send fresh (RFC 7675).
//
// Only what ICE-lite needs is here: Binding requests are parsed, their
// USERNAME, MESSAGE-INTEGRITY and FINGERPRINT checked, and a success
// response written; nothing allocates, so consent checks cost the relay's
// packet path no garbage.
package ice
