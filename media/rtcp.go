package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// RTCP is terminated hop by hop. Toward subscribers the server is the sender
// (pion's SenderInterceptor writes sender reports for each leg) and it reads
// every leg's RTCP: receiver reports give the round-trip time to the
// participant, NACKs are answered from the publisher's history. Toward
// publishers the server is the receiver: it sends its own receiver reports
// (sendReceiverReport) and NACKs for lost packets (askRepairs), and reads
// their sender reports. Nothing is forwarded end to end.

func registerSenderReports(ir *interceptor.Registry) error {
	f, err := report.NewSenderInterceptor()
	if err != nil {
		return fmt.Errorf("media: sender reports: %w", err)
	}
	ir.Add(f)
	return nil
}

// readLegRTCP consumes the RTCP a subscriber sends about one leg until the
// leg's sender stops. Reading keeps pion's buffers drained; NACKs are
// answered from the current publisher's history. Nothing here allocates, so
// a burst of NACKs after a loss costs no garbage.
func (p *Peer) readLegRTCP(l *leg) {
	buf := make([]byte, maxPacketSize)
	resend := make([]byte, maxPacketSize)
	var pkt rtp.Packet
	for {
		n, _, err := l.sender.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || p.isClosed() {
				return
			}
			continue
		}
		forEachNACK(buf[:n], func(mediaSSRC uint32, seq uint16) {
			p.answerNACK(l, mediaSSRC, seq, resend, &pkt)
		})
		forEachReportDelay(buf[:n], func(lsr, dlsr uint32) { p.observeRTT(time.Now(), lsr, dlsr) })
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

// askRepairs sends the publisher a NACK for the lost packets of its stream
// ssrc that are due to be asked for, and counts those given up.
func (pub *publisher) askRepairs(now time.Time, ssrc uint32) {
	c := &pub.peer.e.counters
	seqs, givenUp := pub.gaps.due(now, time.Duration(pub.peer.rtt.Load()), pub.nackSeqs[:0])
	pub.nackSeqs = seqs
	if givenUp > 0 {
		c.upstreamGivenUp.Add(uint64(givenUp))
	}
	if len(seqs) == 0 {
		return
	}
	p := pub.peer
	pub.nack.SenderSSRC, pub.nack.MediaSSRC = p.rtcpSSRC, ssrc
	pub.nack.Nacks = appendNACKPairs(pub.nack.Nacks[:0], seqs)
	if err := p.pc.WriteRTCP(pub.nackPkts[:]); err != nil {
		if !p.isClosed() {
			p.log.Debug("send NACK", "err", err)
		}
		return
	}
	c.upstreamNACKs.Add(uint64(len(seqs)))
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

// answerNACK resends one packet of the leg, legSeq in the leg's numbering,
// from the history of the publisher the leg carries now.
func (p *Peer) answerNACK(l *leg, mediaSSRC uint32, legSeq uint16, buf []byte, pkt *rtp.Packet) {
	d := l.cur.Load()
	if d == nil {
		return
	}
	b, off := d.binding.Load(), d.offsets.Load()
	if b == nil || off == nil || mediaSSRC != b.ssrc {
		return
	}
	c := &p.e.counters
	// Only sequence numbers this publisher wrote on the leg.
	if !d.ours(legSeq, off) {
		c.nacksMissed.Add(1)
		return
	}
	n := d.pub.history.load(legSeq-off.seq, buf)
	if n == 0 || pkt.Unmarshal(buf[:n]) != nil {
		c.nacksMissed.Add(1)
		return
	}
	var level []byte
	if levelID := uint8(d.pub.levelID.Load()); levelID != 0 {
		if level = pkt.Header.GetExtension(levelID); len(level) > 0 {
			level = level[:1]
		}
	}
	pkt.SequenceNumber = legSeq
	pkt.Timestamp += off.ts
	if d.send(b, &pkt.Header, pkt.Payload, level) != nil {
		c.drop(dropWriteError)
		return
	}
	c.nacksAnswered.Add(1)
}

// readPublisherRTCP consumes the publisher's RTCP on its receiver until the
// receiver stops, keeping the last sender report for the LSR/DLSR fields of
// our receiver reports.
func (p *Peer) readPublisherRTCP(r *webrtc.RTPReceiver) {
	buf := make([]byte, maxPacketSize)
	for {
		n, _, err := r.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || p.isClosed() {
				return
			}
			continue
		}
		if ntp, ok := senderReportNTP(buf[:n]); ok {
			p.pub.recv.senderReport(time.Now(), ntp)
		}
	}
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

// sendReceiverReport sends one RTCP receiver report about the participant's
// published stream, if it has started.
func (p *Peer) sendReceiverReport(now time.Time) {
	if p.sess != nil {
		p.sendReports(now)
		return
	}
	rep, ok := p.pub.recv.report(now)
	if !ok {
		return
	}
	rr := &rtcp.ReceiverReport{SSRC: p.rtcpSSRC, Reports: []rtcp.ReceptionReport{rep}}
	if err := p.pc.WriteRTCP([]rtcp.Packet{rr}); err != nil && !p.isClosed() {
		p.log.Debug("send receiver report", "err", err)
	}
}

func randomSSRC() uint32 {
	for {
		if s := rand.Uint32(); s != 0 {
			return s
		}
	}
}
