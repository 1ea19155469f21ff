// Package metrics exposes a Sotto server's counters to Prometheus: the
// media relay's (rooms, participants, tracks, RTP packets and bytes,
// drops by reason, NACKs), signaling's (joins and join failures, envelopes
// relayed and refused) and the TURN server's (allocations, refusals), plus
// the standard Go runtime and process collectors.
//
// The counters are read from each component's Stats snapshot when
// Prometheus scrapes, so the forwarding path never calls into Prometheus.
// The package also reads the text exposition back (Scrape), which is how
// the load tester takes the server's figures before and after a run.
package metrics
