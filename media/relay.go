package media

import (
	"encoding/binary"
	"time"

	"github.com/pion/rtp"

	"github.com/sotto-voice/sotto/media/transport"
)

// The packet path: a publisher's packet, decrypted in place by the
// transport, is forwarded to every subscriber through the reading
// goroutine's Writer, on that goroutine. Nothing here allocates.

// receive forwards one packet of the participant's stream; pkt is header
// and payload, h its header.
func (pub *publisher) receive(pkt []byte, h *rtp.Header, now time.Time, w *transport.Writer) {
	c := &pub.peer.e.counters
	if want := pub.ssrc.Load(); h.SSRC != want && !(want == 0 && pub.publishes && pub.ssrc.CompareAndSwap(0, h.SSRC)) {
		c.drop(dropUnknownSSRC)
		return
	}
	payload, ok := rtpPayload(pkt)
	if !ok || h.PayloadType != pub.pt {
		c.drop(dropMalformed)
		return
	}
	if pub.closed.Load() {
		return
	}
	arr := pub.gaps.receive(h.SequenceNumber, now)
	if arr == arrivalDuplicate {
		c.drop(dropDuplicate)
		return
	}
	if arr == arrivalRecovered {
		c.upstreamRecovered.Add(1)
	}
	if pub.started.CompareAndSwap(false, true) {
		c.tracks.Add(1)
	}
	c.packetsReceived.Add(1)
	c.bytesReceived.Add(uint64(len(pkt)))
	pub.recv.update(now, h, arr == arrivalNew)

	var level []byte
	if levelID := uint8(pub.levelID.Load()); levelID != 0 {
		// RFC 6464: one byte; anything longer is cut to it.
		if level = h.GetExtension(levelID); len(level) > 0 {
			level = level[:1]
			pub.speech.observe(now.UnixNano(), level[0]&0x7f)
		}
	}
	pub.history.store(h.SequenceNumber, pkt)

	var sent, bytes uint64
	for _, d := range *pub.downs.Load() {
		if size := d.write(w, h, payload, level, now); size > 0 {
			sent++
			bytes += uint64(size)
		}
	}
	pub.askRepairs(now, h.SSRC, w)
	if sent == 0 {
		c.drop(dropNoSubscriber)
		return
	}
	c.packetsForwarded.Add(sent)
	c.bytesForwarded.Add(bytes)
}

// stopped counts the publisher's stream out when its participant leaves.
func (pub *publisher) stopped() {
	if pub.started.CompareAndSwap(true, false) {
		pub.peer.e.counters.tracks.Add(-1)
	}
}

// rtpPayload returns the payload of an RTP packet, padding excluded; ok is
// false if the header's lengths do not fit the packet.
func rtpPayload(pkt []byte) (payload []byte, ok bool) {
	if len(pkt) < 12 {
		return nil, false
	}
	n := 12 + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 { // extension: profile, length in words, data
		if len(pkt) < n+4 {
			return nil, false
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(pkt[n+2:]))
	}
	end := len(pkt)
	if pkt[0]&0x20 != 0 && end > n {
		end -= int(pkt[end-1])
	}
	if n > end {
		return nil, false
	}
	return pkt[n:end], true
}

// srtpOverhead is the most SRTP adds to a packet: the AES-GCM tag.
const srtpOverhead = 16

// marshalLeg writes the leg's RTP packet into buf: the leg's SSRC,
// payload type and numbering, the audio level under the leg's extension
// ID, the payload as it came. It returns the packet's size, 0 if it would
// not fit.
func marshalLeg(buf []byte, b *binding, marker bool, seq uint16, ts uint32, payload, level []byte) int {
	buf[0] = 0x80 // version 2
	buf[1] = b.pt
	if marker {
		buf[1] |= 0x80
	}
	binary.BigEndian.PutUint16(buf[2:], seq)
	binary.BigEndian.PutUint32(buf[4:], ts)
	binary.BigEndian.PutUint32(buf[8:], b.ssrc)
	n := 12
	if len(level) > 0 && b.levelID != 0 {
		buf[0] |= 0x10
		// RFC 8285: one element in a one-byte header (IDs 1-14) or a
		// two-byte one, padded to a 32-bit word.
		if b.levelID <= 14 {
			copy(buf[12:], []byte{0xbe, 0xde, 0, 1, b.levelID << 4, level[0], 0, 0})
		} else {
			copy(buf[12:], []byte{0x10, 0, 0, 1, b.levelID, 1, level[0], 0})
		}
		n = 20
	}
	if n+len(payload)+srtpOverhead > len(buf) {
		return 0
	}
	return n + copy(buf[n:], payload)
}

// write sends one packet of the publisher on the leg through w.
func (d *downTrack) write(w *transport.Writer, h *rtp.Header, payload, level []byte, now time.Time) int {
	b := d.binding.Load()
	if b == nil {
		return 0
	}
	seq, ts, ok := d.number(h, now)
	if !ok {
		return 0
	}
	n := marshalLeg(w.Buffer(), b, h.Marker, seq, ts, payload, level)
	// A subscriber whose transport is not up yet gets nothing, as a
	// PeerConnection's unstarted sender would.
	if n == 0 || !w.WriteRTP(b.sess, n) {
		return 0
	}
	d.sent(seq, ts, now)
	d.leg.packets.Add(1)
	d.leg.octets.Add(uint32(len(payload)))
	return n
}
