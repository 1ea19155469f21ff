package media

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/sotto-voice/sotto/media/transport"
)

// publisher is one participant's published audio and the subscribers it is
// forwarded to.
type publisher struct {
	peer    *Peer
	id      string // participant ID: the downlink stream ID
	trackID string // "audio-" + participant ID: the downlink track ID
	history *history
	levelID atomic.Uint32 // audio-level extension ID on the publisher's leg; 0 = none
	speech  speechDetector
	recv    reception

	// The stream the participant publishes, from its offer (ssrc 0 until
	// known, if the offer declared none); started once its first packet
	// came.
	publishes bool
	ssrc      atomic.Uint32
	pt        uint8
	started   atomic.Bool

	// Upstream loss repair, owned by the forwarding loop: the receive
	// window, and the NACK it sends, reused.
	gaps     gapTracker
	nackSeqs []uint16
	nack     rtcp.TransportLayerNack
	nackPkts [1]rtcp.Packet

	// downs is the copy-on-write list of subscribers the forwarding loop
	// writes to; mu serializes its writers.
	mu     sync.Mutex
	downs  atomic.Pointer[[]*downTrack]
	closed atomic.Bool
}

func newPublisher(p *Peer, historySize int) *publisher {
	pub := &publisher{
		peer:    p,
		id:      p.id,
		trackID: "audio-" + p.id,
		history: newHistory(historySize),
	}
	pub.nackPkts[0] = &pub.nack
	pub.downs.Store(&[]*downTrack{})
	return pub
}

func (pub *publisher) addDown(d *downTrack) {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	old := *pub.downs.Load()
	next := make([]*downTrack, len(old), len(old)+1)
	copy(next, old)
	next = append(next, d)
	pub.downs.Store(&next)
}

func (pub *publisher) removeDown(d *downTrack) {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	old := *pub.downs.Load()
	next := make([]*downTrack, 0, len(old))
	for _, x := range old {
		if x != d {
			next = append(next, x)
		}
	}
	pub.downs.Store(&next)
}

// downTrack is one publisher's audio as sent to one subscriber, on one of
// the subscriber's legs.
//
// Track identity on the wire: the stream ID (first a=msid value) is the
// publisher's participant ID and the track ID is "audio-" + participant ID,
// so a client maps each incoming track to a participant from the SDP alone.
type downTrack struct {
	pub     *publisher
	leg     *leg
	binding atomic.Pointer[binding]
	offsets atomic.Pointer[legOffsets] // set by the first packet written
	// settled is set once the track is far enough into the leg that no
	// packet from before its start can still come: from then on every
	// sequence number is the track's, across wraparounds.
	settled atomic.Bool
}

// binding is what was negotiated for one subscriber leg.
type binding struct {
	ssrc    uint32
	pt      uint8
	levelID uint8              // audio-level extension ID on this leg; 0 = not negotiated
	sess    *transport.Session // the subscriber's
}

// legOffsets map the publisher's sequence numbers and timestamps onto the
// leg's, which must stay continuous when a leg is reused for another
// publisher: it keeps its SSRC, and SRTP's rollover and replay logic assume
// one increasing sequence per SSRC.
type legOffsets struct {
	seq      uint16 // leg seq = publisher seq + seq
	ts       uint32 // leg timestamp = publisher timestamp + ts
	firstLeg uint16 // first leg sequence number this track wrote
}

// leg is one server-added sendonly m-line of a subscriber, with its own
// SSRC. It carries one publisher at a time; when that publisher leaves,
// the m-line goes inactive and is reused for the next publisher.
type leg struct {
	mid     string
	ssrc    uint32
	offered *publisher                // the publisher of the last offer; under the subscriber's mu
	cur     atomic.Pointer[downTrack] // the track on it now, for NACKs
	// Last packet written, for continuity across publishers.
	lastSeq atomic.Uint32
	lastTS  atomic.Uint32
	lastAt  atomic.Int64 // unix nanoseconds; 0 = never written
	// What the leg's sender reports count (RFC 3550 section 6.4.1).
	packets atomic.Uint32
	octets  atomic.Uint32
}

// number places a packet of the publisher on the leg: its sequence number
// and timestamp there. ok is false for a late packet from before this
// track's first on the leg, whose number belongs to the previous publisher
// there.
func (d *downTrack) number(h *rtp.Header, now time.Time) (seq uint16, ts uint32, ok bool) {
	off := d.offsets.Load()
	if off == nil {
		off = d.startOffsets(h, now)
	}
	seq = h.SequenceNumber + off.seq
	if !d.ours(seq, off) {
		return 0, 0, false
	}
	return seq, h.Timestamp + off.ts, true
}

// settleAfter is how far into the leg a track must be before a sequence
// number behind its first can no longer be a late packet of the previous
// publisher there: far more than any packet is late (the relay asks for a
// lost one for 2.5 s, 128 packets), far less than half the sequence space.
const settleAfter = 1 << 12

// ours reports whether leg sequence number seq is this track's, not one
// from before its first packet on the leg (the previous publisher's).
func (d *downTrack) ours(seq uint16, off *legOffsets) bool {
	if d.settled.Load() {
		return true
	}
	dist := int16(seq - off.firstLeg)
	if dist >= settleAfter {
		d.settled.Store(true)
	}
	return dist >= 0
}

// sent records a packet written on the leg. A late packet does not move
// the leg's end back: the next publisher on it continues after the newest.
func (d *downTrack) sent(seq uint16, ts uint32, now time.Time) {
	if last := d.leg.lastAt.Load(); last == 0 || int16(seq-uint16(d.leg.lastSeq.Load())) > 0 {
		d.leg.lastSeq.Store(uint32(seq))
		d.leg.lastTS.Store(ts)
		d.leg.lastAt.Store(now.UnixNano())
	}
}

// startOffsets runs once per downTrack, on its first packet. A fresh leg
// passes the publisher's numbering through; a reused one continues its own,
// with the timestamp advanced by the wall time since its last packet.
func (d *downTrack) startOffsets(h *rtp.Header, now time.Time) *legOffsets {
	off := &legOffsets{firstLeg: h.SequenceNumber}
	if last := d.leg.lastAt.Load(); last != 0 {
		nextSeq := uint16(d.leg.lastSeq.Load()) + 1
		elapsed := max(now.UnixNano()-last, int64(20*time.Millisecond))
		nextTS := d.leg.lastTS.Load() + uint32(elapsed*opusClockRate/int64(time.Second))
		off.seq = nextSeq - h.SequenceNumber
		off.ts = nextTS - h.Timestamp
		off.firstLeg = nextSeq
	}
	d.offsets.Store(off)
	return off
}

const opusClockRate = 48000
