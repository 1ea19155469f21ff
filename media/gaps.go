package media

import "time"

// Upstream loss repair: the relay asks a publisher again (RFC 4585 generic
// NACK) for packets the network lost on their way to the relay, so that
// every subscriber gets them, late, instead of each subscriber asking the
// relay in vain. gapTracker decides what to ask for and when; it knows
// sequence numbers and time only, so any packet path can drive it.
const (
	// gapWindow is how many sequence numbers behind the newest the tracker
	// remembers: 2.5 s of 20 ms packets, far longer than a repair takes.
	gapWindow = 128
	// maxRepairGap is the longest run of lost packets asked for. A longer
	// run is an outage (a cut network, a paused sender) whose audio would
	// come back too late to be played; receivers conceal it instead.
	maxRepairGap = 16
	// maxNACKs bounds the requests for one packet. With 5 % random loss
	// each way, three requests leave about 1 in 20,000 packets lost.
	maxNACKs = 3
	// Until the publisher's round-trip time is known (from its receiver
	// reports) it is taken to be defaultRTT, as libwebrtc does.
	defaultRTT = 100 * time.Millisecond
	// minRetry keeps the retry of a request after the publisher's own
	// guard against resending a packet twice within one round trip.
	minRetry = 20 * time.Millisecond
)

// retryAfter is how long a request waits for its packet before it is
// repeated (or given up): a round trip, with half of one again for the
// publisher's scheduling.
func retryAfter(rtt time.Duration) time.Duration {
	if rtt <= 0 {
		rtt = defaultRTT
	}
	return max(rtt+rtt/2, minRetry)
}

// arrival classifies a received packet.
type arrival uint8

const (
	arrivalNew       arrival = iota // the newest so far: in order, or after a gap
	arrivalLate                     // older than the newest, not asked for: reordered, or too late
	arrivalRecovered                // a lost packet that was asked for, still awaited
	arrivalDuplicate                // received before: drop it
)

type slotState uint8

const (
	slotUnknown   slotState = iota // not tracked: before the stream, or in an outage
	slotReceived                   // arrived
	slotMissing                    // lost and being asked for
	slotAbandoned                  // lost, asked for maxNACKs times in vain
)

type gapSlot struct {
	seq   uint16
	state slotState
	nacks uint8     // requests sent so far
	due   time.Time // when to ask (again), while missing
}

// gapTracker is the receive window of one published stream. Not safe for
// concurrent use: the stream's forwarding loop owns it, calling receive for
// every packet and then due. Retries therefore ride on arrivals, which
// come every 20 ms or so while the stream runs; nothing allocates.
type gapTracker struct {
	started bool
	highest uint16 // newest sequence number received
	slots   [gapWindow]gapSlot
	pending int       // slots missing
	nextDue time.Time // earliest due among them
	dropped int       // missing slots pushed out of the window since due last ran
}

// receive records the arrival of packet seq at now.
func (g *gapTracker) receive(seq uint16, now time.Time) arrival {
	if !g.started {
		g.started, g.highest = true, seq
		g.slots[seq%gapWindow] = gapSlot{seq: seq, state: slotReceived}
		return arrivalNew
	}
	if d := seq - g.highest; d != 0 && d < 1<<15 {
		g.advance(seq, d, now)
		return arrivalNew
	}
	s := &g.slots[seq%gapWindow]
	if g.highest-seq >= gapWindow || s.seq != seq {
		// Older than anything remembered: whoever is still waiting for it
		// decides whether it is of use.
		return arrivalLate
	}
	switch s.state {
	case slotReceived:
		return arrivalDuplicate
	case slotMissing:
		g.pending--
		s.state = slotReceived
		if s.nacks > 0 {
			return arrivalRecovered
		}
		return arrivalLate
	default:
		s.state = slotReceived
		return arrivalLate
	}
}

// advance moves the window to a new highest sequence number seq, d ahead:
// the d-1 numbers skipped are missing, and asked for at once unless they
// are too many.
func (g *gapTracker) advance(seq, d uint16, now time.Time) {
	repair := int(d)-1 <= maxRepairGap
	n := min(int(d), gapWindow) // slots overwritten, seq's own included
	for s := seq - uint16(n) + 1; s != seq; s++ {
		slot := g.retire(s)
		if repair {
			*slot = gapSlot{seq: s, state: slotMissing, due: now}
			g.pending++
		} else {
			*slot = gapSlot{seq: s}
		}
	}
	*g.retire(seq) = gapSlot{seq: seq, state: slotReceived}
	g.highest = seq
	if repair && d > 1 && now.Before(g.nextDue) {
		g.nextDue = now // a nextDue already past makes due look anyway
	}
}

// retire frees the slot seq is about to take; a packet still missing there
// is pushed out of the window and counts as given up.
func (g *gapTracker) retire(seq uint16) *gapSlot {
	s := &g.slots[seq%gapWindow]
	if s.state == slotMissing {
		g.pending--
		g.dropped++
	}
	return s
}

// due appends to dst the sequence numbers to ask for now, oldest first, and
// reports how many lost packets were given up since the last call: asked
// for maxNACKs times with no answer within retryAfter(rtt) of the last
// request, or pushed out of the window. rtt is the publisher's round-trip
// time, 0 if unknown.
func (g *gapTracker) due(now time.Time, rtt time.Duration, dst []uint16) (nacks []uint16, givenUp int) {
	givenUp, g.dropped = g.dropped, 0
	if g.pending == 0 || now.Before(g.nextDue) {
		return dst, givenUp
	}
	retry := retryAfter(rtt)
	var next time.Time
	for i := gapWindow - 1; i >= 0; i-- {
		seq := g.highest - uint16(i)
		s := &g.slots[seq%gapWindow]
		if s.seq != seq || s.state != slotMissing {
			continue
		}
		if now.Before(s.due) {
			if next.IsZero() || s.due.Before(next) {
				next = s.due
			}
			continue
		}
		if s.nacks >= maxNACKs {
			s.state = slotAbandoned
			g.pending--
			givenUp++
			continue
		}
		s.nacks++
		s.due = now.Add(retry)
		dst = append(dst, seq)
		if next.IsZero() || s.due.Before(next) {
			next = s.due
		}
	}
	g.nextDue = next
	return dst, givenUp
}
