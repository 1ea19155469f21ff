package media

import "sync/atomic"

// Reasons a packet is dropped, the keys of Stats.Dropped.
const (
	DropUnknownSSRC  = "unknown_ssrc"  // RTP on a stream the participant does not own
	DropNoSubscriber = "no_subscriber" // nobody to forward to (alone in the room, or not negotiated yet)
	DropWriteError   = "write_error"   // writing to a subscriber failed (counted per subscriber)
	DropMalformed    = "malformed"     // not a parsable RTP packet
)

var dropReasons = [...]string{DropUnknownSSRC, DropNoSubscriber, DropWriteError, DropMalformed}

type dropReason int

const (
	dropUnknownSSRC dropReason = iota
	dropNoSubscriber
	dropWriteError
	dropMalformed
)

// Stats is a snapshot of the engine's counters. Rooms, Peers and Tracks are
// current values; the others only grow.
type Stats struct {
	Rooms  int // open rooms
	Peers  int // joined participants
	Tracks int // published tracks being forwarded

	PacketsReceived  uint64 // RTP packets accepted from publishers
	BytesReceived    uint64 // their size, RTP header included
	PacketsForwarded uint64 // RTP packets written to subscribers (one per subscriber)
	BytesForwarded   uint64
	NACKsAnswered    uint64 // packets resent from history after a subscriber's NACK
	NACKsMissed      uint64 // NACKed packets no longer (or never) in history

	Dropped map[string]uint64 // reason -> packets; keys are the Drop* constants
}

type counters struct {
	rooms, peers, tracks atomic.Int64

	packetsReceived, bytesReceived   atomic.Uint64
	packetsForwarded, bytesForwarded atomic.Uint64
	nacksAnswered, nacksMissed       atomic.Uint64
	dropped                          [len(dropReasons)]atomic.Uint64
}

func (c *counters) drop(r dropReason) { c.dropped[r].Add(1) }

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	c := &e.counters
	s := Stats{
		Rooms:            int(c.rooms.Load()),
		Peers:            int(c.peers.Load()),
		Tracks:           int(c.tracks.Load()),
		PacketsReceived:  c.packetsReceived.Load(),
		BytesReceived:    c.bytesReceived.Load(),
		PacketsForwarded: c.packetsForwarded.Load(),
		BytesForwarded:   c.bytesForwarded.Load(),
		NACKsAnswered:    c.nacksAnswered.Load(),
		NACKsMissed:      c.nacksMissed.Load(),
		Dropped:          make(map[string]uint64, len(dropReasons)),
	}
	for i, name := range dropReasons {
		s.Dropped[name] = c.dropped[i].Load()
	}
	return s
}
