package media

import (
	"encoding/binary"
	"math/rand/v2"
	"time"

	"github.com/pion/rtcp"

	"github.com/sotto-voice/sotto/media/transport"
)

// RTCP is terminated hop by hop. Toward subscribers the relay is the
// sender: it sends sender reports for each leg and reads the subscriber's
// RTCP, whose receiver reports give the round-trip time to the participant
// and whose NACKs are answered from the publisher's history. Toward
// publishers the relay is the receiver: it sends its own receiver reports
// and NACKs for lost packets (askRepairs), and reads their sender reports.
// Nothing is forwarded end to end, and nothing here allocates, so a burst
// of NACKs after a loss costs no garbage.

// handleRTCP takes a participant's compound RTCP: NACKs about its legs are
// answered from the publishers' histories, report blocks give its round
// trip, and its sender reports go into the receiver reports about its own
// stream.
func (p *Peer) handleRTCP(pkt []byte, now time.Time, w *transport.Writer) {
	forEachNACK(pkt, func(mediaSSRC uint32, seq uint16) { p.answerNACK(mediaSSRC, seq, w) })
	forEachReportDelay(pkt, func(lsr, dlsr uint32) { p.observeRTT(now, lsr, dlsr) })
	if ntp, ok := senderReportNTP(pkt); ok {
		p.pub.recv.senderReport(now, ntp)
	}
}

// answerNACK resends packet legSeq of the leg with SSRC mediaSSRC
// from the history of the publisher the leg carries now. The transport
// hands a session's packets over one at a time, so the peer's NACK
// buffers need no lock.
func (p *Peer) answerNACK(mediaSSRC uint32, legSeq uint16, w *transport.Writer) {
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

// askRepairs sends the publisher a NACK for the lost packets of its
// stream ssrc that are due to be asked for, and counts those given up.
func (pub *publisher) askRepairs(now time.Time, ssrc uint32, w *transport.Writer) {
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
// each leg the relay sends it. The engine's tick calls it.
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

// forEachReportDelay calls f with the LSR and DLSR fields of every reception
// report block (RFC 3550 section 6.4) in the sender and receiver reports of
// a compound RTCP packet.
func forEachReportDelay(b []byte, f func(lsr, dlsr uint32)) {
	forEachRTCP(b, func(h rtcp.Header, pkt []byte) {
		// Report blocks follow the sender SSRC (RR) or the sender info (SR).
		start := 0
		switch h.Type {
		case rtcp.TypeReceiverReport:
			start = 8
		case rtcp.TypeSenderReport:
			start = 28
		default:
			return
		}
		for i, blk := 0, pkt[min(start, len(pkt)):]; i < int(h.Count) && len(blk) >= 24; i, blk = i+1, blk[24:] {
			f(binary.BigEndian.Uint32(blk[16:20]), binary.BigEndian.Uint32(blk[20:24]))
		}
	})
}

// forEachRTCP calls f with the header and the bytes of each packet of a
// compound RTCP packet, up to the first that is malformed.
func forEachRTCP(b []byte, f func(h rtcp.Header, pkt []byte)) {
	for len(b) >= 4 {
		var h rtcp.Header
		if err := h.Unmarshal(b); err != nil {
			return
		}
		size := (int(h.Length) + 1) * 4
		if size > len(b) {
			return
		}
		f(h, b[:size])
		b = b[size:]
	}
}

// maxRTT bounds the round-trip times believed: a larger figure comes from a
// bogus report, not from a network a call could run on.
const maxRTT = 5 * time.Second

// observeRTT takes a round-trip time sample from a reception report about a
// stream the relay sends the participant: the report arrived at now and
// echoes, as lsr, the middle bits of the NTP time of the relay's last sender
// report, dlsr after receiving it. The estimate is smoothed as TCP's is
// (RFC 6298: 1/8 of each new sample).
func (p *Peer) observeRTT(now time.Time, lsr, dlsr uint32) {
	if lsr == 0 {
		return // no sender report received yet
	}
	units := int32(ntpMiddle(now) - lsr - dlsr) // 1/65536 s
	sample := time.Duration(units) * time.Second / 65536
	if sample < 0 || sample > maxRTT {
		return
	}
	for {
		old := p.rtt.Load()
		next := int64(sample)
		if old != 0 {
			next = old + (int64(sample)-old)/8
		}
		if p.rtt.CompareAndSwap(old, max(next, 1)) {
			return
		}
	}
}

// ntpMiddle is the middle 32 bits of t as an NTP timestamp, the unit of
// LSR and DLSR.
func ntpMiddle(t time.Time) uint32 { return uint32(ntpTime(t) >> 16) }

// ntpTime is t as a 64-bit NTP timestamp: seconds since 1900, and a
// 32-bit fraction.
func ntpTime(t time.Time) uint64 {
	const unixToNTP = 2208988800 // seconds from 1900 to 1970
	secs := uint64(t.Unix() + unixToNTP)
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return secs<<32 | frac
}

// appendNACKPairs packs ascending sequence numbers (modulo 2^16) into
// generic NACK (PID, BLP) pairs: each pair names a packet and a bitmask of
// the 16 after it.
func appendNACKPairs(dst []rtcp.NackPair, seqs []uint16) []rtcp.NackPair {
	for _, seq := range seqs {
		if n := len(dst); n > 0 {
			if d := seq - dst[n-1].PacketID; d >= 1 && d <= 16 {
				dst[n-1].LostPackets |= 1 << (d - 1)
				continue
			}
		}
		dst = append(dst, rtcp.NackPair{PacketID: seq})
	}
	return dst
}

// forEachNACK calls f for every sequence number of every generic NACK
// (RFC 4585 section 6.2.1) in a compound RTCP packet, and ignores the rest.
func forEachNACK(b []byte, f func(mediaSSRC uint32, seq uint16)) {
	forEachRTCP(b, func(h rtcp.Header, pkt []byte) {
		// Header, sender SSRC, media SSRC, then 4-byte (PID, BLP) pairs.
		if h.Type != rtcp.TypeTransportSpecificFeedback || h.Count != rtcp.FormatTLN || len(pkt) < 12 {
			return
		}
		media := binary.BigEndian.Uint32(pkt[8:12])
		for fci := pkt[12:]; len(fci) >= 4; fci = fci[4:] {
			pid := binary.BigEndian.Uint16(fci)
			blp := binary.BigEndian.Uint16(fci[2:])
			f(media, pid)
			for i := range uint16(16) {
				if blp&(1<<i) != 0 {
					f(media, pid+i+1)
				}
			}
		}
	})
}

// senderReportNTP returns the NTP timestamp of the last sender report in a
// compound RTCP packet.
func senderReportNTP(b []byte) (ntp uint64, ok bool) {
	forEachRTCP(b, func(h rtcp.Header, pkt []byte) {
		// Header, sender SSRC, then the 64-bit NTP timestamp.
		if h.Type == rtcp.TypeSenderReport && len(pkt) >= 16 {
			ntp, ok = binary.BigEndian.Uint64(pkt[8:16]), true
		}
	})
	return ntp, ok
}

func randomSSRC() uint32 {
	for {
		if s := rand.Uint32(); s != 0 {
			return s
		}
	}
}
