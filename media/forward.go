package media

import (
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

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

	// PathDirect: the stream the participant publishes, from its offer
	// (ssrc 0 until known, if the offer declared none); started once its
	// first packet came.
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

// maxReadFailures consecutive read errors end a forwarding loop.
const maxReadFailures = 1000

// forward is the hot path: it reads the publisher's RTP into one reused
// buffer and writes it to every subscriber. Nothing here allocates per
// packet.
//
// Packets come in any order. A packet lost on the way from the publisher
// is asked for again (askRepairs); when it comes, late, it goes to the
// subscribers and into the history like any other, so a subscriber that
// asks the relay for it is answered too.
func (pub *publisher) forward(track *webrtc.TrackRemote) {
	c := &pub.peer.e.counters
	levelID := uint8(pub.levelID.Load())
	buf := make([]byte, maxPacketSize)
	var pkt rtp.Packet
	failures := 0
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) || pub.closed.Load() {
				return
			}
			// A packet pion could not hand over (too big, unknown payload
			// type) has been consumed: go on with the next one. An error
			// that persists means the stream is gone without an EOF.
			c.drop(dropMalformed)
			if failures++; failures == maxReadFailures {
				pub.peer.log.Warn("stop reading publisher track", "err", err)
				return
			}
			continue
		}
		failures = 0
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			c.drop(dropMalformed)
			continue
		}
		now := time.Now()
		arr := pub.gaps.receive(pkt.SequenceNumber, now)
		if arr == arrivalDuplicate {
			c.drop(dropDuplicate)
			continue
		}
		if arr == arrivalRecovered {
			c.upstreamRecovered.Add(1)
		}
		c.packetsReceived.Add(1)
		c.bytesReceived.Add(uint64(n))
		pub.recv.update(now, &pkt.Header, arr == arrivalNew)

		var level []byte
		if levelID != 0 {
			// RFC 6464: one byte; anything longer is cut to it.
			if level = pkt.Header.GetExtension(levelID); len(level) > 0 {
				level = level[:1]
				pub.speech.observe(now.UnixNano(), level[0]&0x7f)
			}
		}
		pub.history.store(pkt.SequenceNumber, buf[:n])
		ssrc := pkt.SSRC // the writes below rewrite it per leg

		// Counted once per packet: the counters are shared by every
		// publisher goroutine.
		var sent, bytes uint64
		for _, d := range *pub.downs.Load() {
			if size := d.write(&pkt.Header, pkt.Payload, level, now); size > 0 {
				sent++
				bytes += uint64(size)
			}
		}
		pub.askRepairs(now, ssrc)
		if sent == 0 {
			c.drop(dropNoSubscriber)
			continue
		}
		c.packetsForwarded.Add(sent)
		c.bytesForwarded.Add(bytes)
	}
}

// downTrack is one publisher's audio as sent to one subscriber: pion's
// TrackLocal for the subscriber's sendonly transceiver.
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

// binding is what pion negotiated for one subscriber leg.
type binding struct {
	ssrc    uint32
	pt      uint8
	levelID uint8                   // audio-level extension ID on this leg; 0 = not negotiated
	w       webrtc.TrackLocalWriter // PathPion
	sess    *transport.Session      // PathDirect: the subscriber's
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

// leg is one server-added sendonly transceiver of a subscriber. It carries
// one publisher at a time; when that publisher leaves, the transceiver goes
// inactive and is reused for the next publisher.
type leg struct {
	tr     *webrtc.RTPTransceiver    // PathPion
	sender *webrtc.RTPSender         // PathPion
	cur    atomic.Pointer[downTrack] // the track on it now, for NACKs
	// Last packet written, for continuity across publishers.
	lastSeq atomic.Uint32
	lastTS  atomic.Uint32
	lastAt  atomic.Int64 // unix nanoseconds; 0 = never written

	// PathDirect: the leg's m-line and SSRC, the publisher the last offer
	// put on it (under the subscriber's mu), and what its sender reports
	// count.
	mid     string
	ssrc    uint32
	offered *publisher
	packets atomic.Uint32
	octets  atomic.Uint32
}

var errNoOpus = errors.New("media: subscriber did not negotiate Opus")

func (d *downTrack) ID() string                { return d.pub.trackID }
func (d *downTrack) StreamID() string          { return d.pub.id }
func (d *downTrack) RID() string               { return "" }
func (d *downTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeAudio }

// Bind records the leg's SSRC, Opus payload type and audio-level ID.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, codec := range ctx.CodecParameters() {
		if !strings.EqualFold(codec.MimeType, webrtc.MimeTypeOpus) {
			continue
		}
		b := &binding{ssrc: uint32(ctx.SSRC()), pt: uint8(codec.PayloadType), w: ctx.WriteStream()}
		for _, ext := range ctx.HeaderExtensions() {
			if ext.URI == sdp.AudioLevelURI && ext.ID > 0 && ext.ID < 256 {
				b.levelID = uint8(ext.ID)
			}
		}
		d.binding.Store(b)
		return codec, nil
	}
	return webrtc.RTPCodecParameters{}, errNoOpus
}

// Unbind stops writes to the leg.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.binding.Store(nil)
	return nil
}

// write sends one packet of the publisher on the leg. h is the publisher
// goroutine's header, rewritten in place: the SSRC, payload type and
// extension become the leg's, and each write sets them afresh; the sequence
// number and timestamp are shifted by the leg's offsets and restored as soon
// as the packet is sent, since the next leg's offsets apply to the
// publisher's numbering. payload is never touched. It returns the size of
// the packet written, 0 if none.
func (d *downTrack) write(h *rtp.Header, payload, level []byte, now time.Time) int {
	b := d.binding.Load()
	if b == nil {
		return 0
	}
	legSeq, legTS, ok := d.number(h, now)
	if !ok {
		return 0
	}
	pubSeq, pubTS := h.SequenceNumber, h.Timestamp
	h.SequenceNumber, h.Timestamp = legSeq, legTS
	err := d.send(b, h, payload, level)
	h.SequenceNumber, h.Timestamp = pubSeq, pubTS
	if err != nil {
		d.pub.peer.e.counters.drop(dropWriteError)
		return 0
	}
	d.sent(legSeq, legTS, now)
	return h.MarshalSize() + len(payload)
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

func (d *downTrack) send(b *binding, h *rtp.Header, payload, level []byte) error {
	h.SSRC = b.ssrc
	h.PayloadType = b.pt
	// The only extension a leg carries is the audio level, under the ID
	// negotiated on that leg (clients may pick different IDs).
	h.Extensions = h.Extensions[:0]
	h.Extension = false
	h.ExtensionProfile = 0
	if len(level) > 0 && b.levelID != 0 {
		if err := h.SetExtension(b.levelID, level); err != nil {
			return err
		}
		if b.levelID > 14 {
			h.ExtensionProfile = rtp.ExtensionProfileTwoByte
		}
	}
	_, err := b.w.WriteRTP(h, payload)
	return err
}
