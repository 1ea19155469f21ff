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
// every leg's RTCP: receiver reports are consumed there, NACKs are answered
// from the publisher's history. Toward publishers the server is the receiver:
// it sends its own receiver reports (sendReceiverReport) and reads their
// sender reports. Nothing is forwarded end to end.

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
	}
}

// forEachNACK calls f for every sequence number of every generic NACK
// (RFC 4585 section 6.2.1) in a compound RTCP packet, and ignores the rest.
func forEachNACK(b []byte, f func(mediaSSRC uint32, seq uint16)) {
	for len(b) >= 4 {
		var h rtcp.Header
		if err := h.Unmarshal(b); err != nil {
			return
		}
		size := (int(h.Length) + 1) * 4
		if size > len(b) {
			return
		}
		// Header, sender SSRC, media SSRC, then 4-byte (PID, BLP) pairs.
		if h.Type == rtcp.TypeTransportSpecificFeedback && h.Count == rtcp.FormatTLN && size >= 12 {
			media := binary.BigEndian.Uint32(b[8:12])
			for fci := b[12:size]; len(fci) >= 4; fci = fci[4:] {
				pid := binary.BigEndian.Uint16(fci)
				blp := binary.BigEndian.Uint16(fci[2:])
				f(media, pid)
				for i := range uint16(16) {
					if blp&(1<<i) != 0 {
						f(media, pid+i+1)
					}
				}
			}
		}
		b = b[size:]
	}
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
	if int16(legSeq-off.firstLeg) < 0 {
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
	for len(b) >= 4 {
		var h rtcp.Header
		if err := h.Unmarshal(b); err != nil {
			return ntp, ok
		}
		size := (int(h.Length) + 1) * 4
		if size > len(b) {
			return ntp, ok
		}
		// Header, sender SSRC, then the 64-bit NTP timestamp.
		if h.Type == rtcp.TypeSenderReport && size >= 16 {
			ntp, ok = binary.BigEndian.Uint64(b[8:16]), true
		}
		b = b[size:]
	}
	return ntp, ok
}

// sendReceiverReport sends one RTCP receiver report about the participant's
// published stream, if it has started.
func (p *Peer) sendReceiverReport(now time.Time) {
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
