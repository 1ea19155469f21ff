package media

import "sync/atomic"

// Reasons a packet is dropped, the keys of Stats.Dropped.
const (
	DropUnknownSSRC  = "unknown_ssrc"  // RTP on a stream the participant does not own
	DropNoSubscriber = "no_subscriber" // nobody to forward to (alone in the room, or not negotiated yet)
	DropWriteError   = "write_error"   // writing to a subscriber failed (counted per subscriber)
	DropMalformed    = "malformed"     // not a parsable RTP packet
	DropDuplicate    = "duplicate"     // a publisher's packet received twice
	// PathDirect only: the transport's own drops.
	DropUnknownSource = "unknown_source" // from an address or connection no participant's ICE check authenticated
	DropUnauthentic   = "unauthentic"    // an ICE check with wrong credentials, or SRTP that does not decrypt
	DropStale         = "stale"          // media that came before the participant's keys and waited too long, or after its session closed
)

var dropReasons = [...]string{DropUnknownSSRC, DropNoSubscriber, DropWriteError, DropMalformed, DropDuplicate}

type dropReason int

const (
	dropUnknownSSRC dropReason = iota
	dropNoSubscriber
	dropWriteError
	dropMalformed
	dropDuplicate
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

	// Upstream loss repair: packets lost between a publisher and the relay.
	UpstreamNACKs     uint64 // requests to publishers to resend a packet (one per packet per request)
	UpstreamRecovered uint64 // lost packets that arrived after being asked for
	UpstreamGivenUp   uint64 // lost packets asked for and never received in time

	Dropped map[string]uint64 // reason -> packets; keys are the Drop* constants
}

type counters struct {
	rooms, peers, tracks atomic.Int64

	packetsReceived, bytesReceived   atomic.Uint64
	packetsForwarded, bytesForwarded atomic.Uint64
	nacksAnswered, nacksMissed       atomic.Uint64
	upstreamNACKs                    atomic.Uint64
	upstreamRecovered                atomic.Uint64
	upstreamGivenUp                  atomic.Uint64
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

		UpstreamNACKs:     c.upstreamNACKs.Load(),
		UpstreamRecovered: c.upstreamRecovered.Load(),
		UpstreamGivenUp:   c.upstreamGivenUp.Load(),
		Dropped:           make(map[string]uint64, len(dropReasons)),
	}
	for i, name := range dropReasons {
		s.Dropped[name] = c.dropped[i].Load()
	}
	if e.tr != nil {
		ts := e.tr.Stats()
		s.Dropped[DropUnknownSource] = ts.UnknownSource
		s.Dropped[DropUnauthentic] = ts.Unauthentic
		s.Dropped[DropStale] = ts.Stale
		s.Dropped[DropMalformed] += ts.Malformed
		s.Dropped[DropWriteError] += ts.WriteErrors
	}
	return s
}
