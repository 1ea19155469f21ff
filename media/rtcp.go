package media

import (
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
// answered from the current publisher's history.
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
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, x := range pkts {
			if nack, ok := x.(*rtcp.TransportLayerNack); ok {
				p.answerNACK(l, nack, resend, &pkt)
			}
		}
	}
}

func (p *Peer) answerNACK(l *leg, nack *rtcp.TransportLayerNack, buf []byte, pkt *rtp.Packet) {
	d := l.cur.Load()
	if d == nil {
		return
	}
	b, off := d.binding.Load(), d.offsets.Load()
	if b == nil || off == nil || nack.MediaSSRC != b.ssrc {
		return
	}
	c := &p.e.counters
	levelID := uint8(d.pub.levelID.Load())
	for _, pair := range nack.Nacks {
		pair.Range(func(legSeq uint16) bool {
			// Only sequence numbers this publisher wrote on the leg.
			if int16(legSeq-off.firstLeg) < 0 {
				c.nacksMissed.Add(1)
				return true
			}
			n := d.pub.history.load(legSeq-off.seq, buf)
			if n == 0 || pkt.Unmarshal(buf[:n]) != nil {
				c.nacksMissed.Add(1)
				return true
			}
			var level []byte
			if levelID != 0 {
				level = pkt.Header.GetExtension(levelID)
			}
			pkt.SequenceNumber = legSeq
			pkt.Timestamp += off.ts
			if d.send(b, &pkt.Header, pkt.Payload, level) != nil {
				c.drop(dropWriteError)
				return true
			}
			c.nacksAnswered.Add(1)
			return true
		})
	}
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
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, x := range pkts {
			if sr, ok := x.(*rtcp.SenderReport); ok {
				p.pub.recv.senderReport(time.Now(), sr)
			}
		}
	}
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
