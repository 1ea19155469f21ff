package media

import (
	"encoding/binary"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/sotto-voice/sotto/media/transport"
)

// PathDirect's packet path: a publisher's packet, decrypted in place by
// the transport, is forwarded to every subscriber through the reading
// goroutine's Writer, and RTCP is answered the same way. Nothing here
// allocates per packet.

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
		if size := d.writeDirect(w, h, payload, level, now); size > 0 {
			sent++
			bytes += uint64(size)
		}
	}
	pub.askRepairsDirect(now, h.SSRC, w)
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

// writeDirect sends one packet of the publisher on the leg through w.
func (d *downTrack) writeDirect(w *transport.Writer, h *rtp.Header, payload, level []byte, now time.Time) int {
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

// handleRTCP takes a participant's compound RTCP: NACKs about its legs are
// answered from the publishers' histories, report blocks give its round
// trip, and its sender reports go into the receiver reports about its own
// stream.
func (p *Peer) handleRTCP(pkt []byte, now time.Time, w *transport.Writer) {
	forEachNACK(pkt, func(mediaSSRC uint32, seq uint16) { p.answerNACKDirect(mediaSSRC, seq, w) })
	forEachReportDelay(pkt, func(lsr, dlsr uint32) { p.observeRTT(now, lsr, dlsr) })
	if ntp, ok := senderReportNTP(pkt); ok {
		p.pub.recv.senderReport(now, ntp)
	}
}

// answerNACKDirect resends packet legSeq of the leg with SSRC mediaSSRC
// from the history of the publisher the leg carries now. The transport
// hands a session's packets over one at a time, so the peer's NACK
// buffers need no lock.
func (p *Peer) answerNACKDirect(mediaSSRC uint32, legSeq uint16, w *transport.Writer) {
	d := p.legTrack(mediaSSRC)
	if d == nil {
		return
	}
	b, off := d.binding.Load(), d.offsets.Load()
	if b == nil || off == nil {
		return
	}
	c := &p.e.counters
	// Only sequence numbers this publisher wrote on the leg.
	if !d.ours(legSeq, off) {
		c.nacksMissed.Add(1)
		return
	}
	if p.nackBuf == nil {
		p.nackBuf = make([]byte, maxPacketSize)
	}
	n := d.pub.history.load(legSeq-off.seq, p.nackBuf)
	if n == 0 {
		c.nacksMissed.Add(1)
		return
	}
	if _, err := p.nackHdr.Unmarshal(p.nackBuf[:n]); err != nil {
		c.nacksMissed.Add(1)
		return
	}
	payload, ok := rtpPayload(p.nackBuf[:n])
	if !ok {
		c.nacksMissed.Add(1)
		return
	}
	var level []byte
	if levelID := uint8(d.pub.levelID.Load()); levelID != 0 {
		if level = p.nackHdr.GetExtension(levelID); len(level) > 0 {
			level = level[:1]
		}
	}
	size := marshalLeg(w.Buffer(), b, p.nackHdr.Marker, legSeq, p.nackHdr.Timestamp+off.ts, payload, level)
	if size == 0 || !w.WriteRTP(b.sess, size) {
		c.drop(dropWriteError)
		return
	}
	c.nacksAnswered.Add(1)
}

// legTrack is the track on the leg with SSRC ssrc, nil if none.
func (p *Peer) legTrack(ssrc uint32) *downTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.legs {
		if l.ssrc == ssrc {
			return l.cur.Load()
		}
	}
	return nil
}

// askRepairsDirect sends the publisher a NACK for the lost packets of its
// stream ssrc that are due to be asked for, and counts those given up.
func (pub *publisher) askRepairsDirect(now time.Time, ssrc uint32, w *transport.Writer) {
	c := &pub.peer.e.counters
	seqs, givenUp := pub.gaps.due(now, time.Duration(pub.peer.rtt.Load()), pub.nackSeqs[:0])
	pub.nackSeqs = seqs
	if givenUp > 0 {
		c.upstreamGivenUp.Add(uint64(givenUp))
	}
	if len(seqs) == 0 {
		return
	}
	pub.nack.Nacks = appendNACKPairs(pub.nack.Nacks[:0], seqs)
	// RFC 4585 section 6.2.1: transport-layer feedback, FMT 1.
	buf := w.Buffer()
	n := 12 + 4*len(pub.nack.Nacks)
	if n+srtpOverhead+4 > len(buf) {
		return
	}
	buf[0], buf[1] = 0x80|rtcp.FormatTLN, byte(rtcp.TypeTransportSpecificFeedback)
	binary.BigEndian.PutUint16(buf[2:], uint16(n/4-1))
	binary.BigEndian.PutUint32(buf[4:], pub.peer.rtcpSSRC)
	binary.BigEndian.PutUint32(buf[8:], ssrc)
	for i, pair := range pub.nack.Nacks {
		binary.BigEndian.PutUint16(buf[12+4*i:], pair.PacketID)
		binary.BigEndian.PutUint16(buf[14+4*i:], uint16(pair.LostPackets))
	}
	if !w.WriteRTCP(pub.peer.sess, n) {
		return
	}
	c.upstreamNACKs.Add(uint64(len(seqs)))
}

// maxReportSize keeps a compound report within one datagram.
const maxReportSize = 1000

// sendReports sends the participant, in one compound packet per second,
// the relay's receiver report about its stream and a sender report for
// each leg the relay sends it. The room's goroutine calls it.
func (p *Peer) sendReports(now time.Time) {
	buf := p.reportBuf[:0]
	if rep, ok := p.pub.recv.report(now); ok {
		// RR with one report block (RFC 3550 section 6.4.2).
		buf = append(buf, 0x81, byte(rtcp.TypeReceiverReport), 0, 7)
		buf = binary.BigEndian.AppendUint32(buf, p.rtcpSSRC)
		buf = binary.BigEndian.AppendUint32(buf, rep.SSRC)
		buf = binary.BigEndian.AppendUint32(buf, uint32(rep.FractionLost)<<24|rep.TotalLost&0xffffff)
		buf = binary.BigEndian.AppendUint32(buf, rep.LastSequenceNumber)
		buf = binary.BigEndian.AppendUint32(buf, rep.Jitter)
		buf = binary.BigEndian.AppendUint32(buf, rep.LastSenderReport)
		buf = binary.BigEndian.AppendUint32(buf, rep.Delay)
	}
	ntp := ntpTime(now)
	p.mu.Lock()
	legs := append(p.reportLegs[:0], p.legs...)
	p.mu.Unlock()
	for _, l := range legs {
		last := l.lastAt.Load()
		if l.cur.Load() == nil || last == 0 {
			continue
		}
		if len(buf)+28 > maxReportSize {
			p.sendRTCP(buf)
			buf = buf[:0]
		}
		// SR without report blocks (RFC 3550 section 6.4.1); the RTP time
		// is the leg's last timestamp advanced to now.
		ts := l.lastTS.Load() + uint32(now.Sub(time.Unix(0, last))*opusClockRate/time.Second)
		buf = append(buf, 0x80, byte(rtcp.TypeSenderReport), 0, 6)
		buf = binary.BigEndian.AppendUint32(buf, l.ssrc)
		buf = binary.BigEndian.AppendUint64(buf, ntp)
		buf = binary.BigEndian.AppendUint32(buf, ts)
		buf = binary.BigEndian.AppendUint32(buf, l.packets.Load())
		buf = binary.BigEndian.AppendUint32(buf, l.octets.Load())
	}
	clear(legs)
	p.reportLegs = legs[:0]
	p.reportBuf = buf[:0]
	if len(buf) > 0 {
		p.sendRTCP(buf)
	}
}

func (p *Peer) sendRTCP(pkt []byte) {
	if err := p.sess.WriteRTCP(pkt); err != nil && !p.isClosed() {
		p.log.Debug("send RTCP", "err", err)
	}
}
