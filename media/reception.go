package media

import (
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// reception keeps the RFC 3550 (appendix A.3, A.8) reception statistics of a
// published stream, for the receiver reports the server sends its
// publishers. It is updated by the forwarding loop from the header it has
// already parsed, which is why the server does not use pion's
// ReceiverInterceptor: that one parses every packet again into fresh
// allocations.
type reception struct {
	mu       sync.Mutex
	ssrc     uint32
	started  bool
	baseSeq  uint32
	maxSeq   uint16
	cycles   uint32
	received uint32

	expectedPrior, receivedPrior uint32

	lastArrival time.Time
	lastTS      uint32
	jitter      float64

	lastSR   uint32 // middle 32 bits of the last SR's NTP time
	lastSRAt time.Time
}

// update accounts one packet; inOrder is false for a packet older than the
// newest, which is left out of the jitter as libwebrtc does: a repaired
// packet's lateness is the repair, not the network's jitter.
func (r *reception) update(now time.Time, h *rtp.Header, inOrder bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started || h.SSRC != r.ssrc {
		r.ssrc, r.started = h.SSRC, true
		r.baseSeq, r.maxSeq, r.cycles = uint32(h.SequenceNumber), h.SequenceNumber, 0
		r.received, r.expectedPrior, r.receivedPrior = 1, 0, 0
		r.lastArrival, r.lastTS, r.jitter = now, h.Timestamp, 0
		return
	}
	r.received++
	if delta := h.SequenceNumber - r.maxSeq; delta != 0 && delta < 1<<15 {
		if h.SequenceNumber < r.maxSeq {
			r.cycles += 1 << 16
		}
		r.maxSeq = h.SequenceNumber
	}
	if !inOrder {
		return
	}
	// Interarrival jitter in timestamp units (RFC 3550 section 6.4.1).
	d := now.Sub(r.lastArrival).Seconds()*opusClockRate - float64(int32(h.Timestamp-r.lastTS))
	if d < 0 {
		d = -d
	}
	r.jitter += (d - r.jitter) / 16
	r.lastArrival, r.lastTS = now, h.Timestamp
}

// senderReport records the arrival of a sender report with NTP time ntp.
func (r *reception) senderReport(now time.Time, ntp uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastSR = uint32(ntp >> 16)
	r.lastSRAt = now
}

// report builds the reception report block since the previous call; ok is
// false before the first packet.
func (r *reception) report(now time.Time) (rep rtcp.ReceptionReport, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		return rep, false
	}
	extMax := r.cycles + uint32(r.maxSeq)
	expected := extMax - r.baseSeq + 1
	lost := int64(expected) - int64(r.received)
	lost = min(max(lost, 0), 0x7fffff)

	expectedInterval := expected - r.expectedPrior
	receivedInterval := r.received - r.receivedPrior
	r.expectedPrior, r.receivedPrior = expected, r.received
	var fraction uint8
	if lostInterval := int64(expectedInterval) - int64(receivedInterval); expectedInterval != 0 && lostInterval > 0 {
		fraction = uint8((lostInterval << 8) / int64(expectedInterval))
	}
	var delay uint32
	if !r.lastSRAt.IsZero() {
		delay = uint32(now.Sub(r.lastSRAt).Seconds() * 65536)
	}
	return rtcp.ReceptionReport{
		SSRC:               r.ssrc,
		FractionLost:       fraction,
		TotalLost:          uint32(lost),
		LastSequenceNumber: extMax,
		Jitter:             uint32(r.jitter),
		LastSenderReport:   r.lastSR,
		Delay:              delay,
	}, true
}
