package media

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// gapClock drives a gapTracker the way the forwarding loop does: receive,
// then due, at times given in milliseconds from an arbitrary start.
type gapClock struct {
	t     *testing.T
	g     gapTracker
	start time.Time
	rtt   time.Duration
}

func newGapClock(t *testing.T, rtt time.Duration) *gapClock {
	return &gapClock{t: t, start: time.Unix(1700000000, 0), rtt: rtt}
}

func (c *gapClock) at(ms int) time.Time { return c.start.Add(time.Duration(ms) * time.Millisecond) }

// recv receives seq at ms and checks how it was classified.
func (c *gapClock) recv(ms int, seq uint16, want arrival) {
	c.t.Helper()
	if got := c.g.receive(seq, c.at(ms)); got != want {
		c.t.Fatalf("at %d ms: receive(%d) = %v, want %v", ms, seq, got, want)
	}
}

// due checks what is asked for and given up at ms.
func (c *gapClock) due(ms int, wantNACKs []uint16, wantGivenUp int) {
	c.t.Helper()
	got, givenUp := c.g.due(c.at(ms), c.rtt, nil)
	if !slices.Equal(got, wantNACKs) || givenUp != wantGivenUp {
		c.t.Fatalf("at %d ms: due = %v, %d given up; want %v, %d", ms, got, givenUp, wantNACKs, wantGivenUp)
	}
}

// TestGapTracker follows a stream across the 16-bit wrap: which sequence
// numbers are asked for, when, how often, and what comes of them.
func TestGapTracker(t *testing.T) {
	// 10 ms round trip: requests are repeated every retryAfter = 20 ms.
	c := newGapClock(t, 10*time.Millisecond)
	if r := retryAfter(c.rtt); r != 20*time.Millisecond {
		t.Fatalf("retryAfter(10ms) = %v", r)
	}
	c.recv(0, 65532, arrivalNew)
	c.due(0, nil, 0)
	c.recv(20, 65533, arrivalNew)
	c.due(20, nil, 0)
	// 65534, 65535 and 0 are lost: asked for as soon as 1 shows the gap.
	c.recv(80, 1, arrivalNew)
	c.due(80, []uint16{65534, 65535, 0}, 0)
	c.due(90, nil, 0) // not before retryAfter
	c.recv(95, 65535, arrivalRecovered)
	c.due(100, []uint16{65534, 0}, 0) // second request
	c.recv(100, 2, arrivalNew)
	c.recv(110, 0, arrivalRecovered)
	c.due(110, nil, 0)
	c.due(120, []uint16{65534}, 0) // third and last request
	c.due(139, nil, 0)
	c.due(140, nil, 1) // no answer within retryAfter of the last: given up
	c.due(500, nil, 0)
	// A given-up packet that still comes is passed on, but not as recovered.
	c.recv(510, 65534, arrivalLate)
	// Anything received twice is a duplicate, the newest included.
	c.recv(520, 0, arrivalDuplicate)
	c.recv(520, 2, arrivalDuplicate)

	// A packet that comes late, before it was asked for, is only reordered.
	c.recv(540, 4, arrivalNew)
	c.recv(541, 3, arrivalLate)
	c.due(541, nil, 0)

	// A run longer than maxRepairGap is an outage: nothing is asked for,
	// and its packets, should they come after all, are late.
	c.recv(600, 4+maxRepairGap+2, arrivalNew)
	c.due(600, nil, 0)
	c.recv(601, 5, arrivalLate)
	// A run of exactly maxRepairGap is asked for, in ascending order.
	next := uint16(4 + maxRepairGap + 2 + maxRepairGap + 1)
	c.recv(620, next, arrivalNew)
	var want []uint16
	for s := next - maxRepairGap; s != next; s++ {
		want = append(want, s)
	}
	c.due(620, want, 0)

	// A jump beyond the window pushes what is still missing out of it.
	c.recv(630, next+gapWindow+1, arrivalNew)
	c.due(630, nil, maxRepairGap)
	// Far older than the window: late, whatever it is.
	c.recv(640, next-1000, arrivalLate)
}

// TestGapTrackerUnknownRTT: without a round-trip time the requests are
// spaced by defaultRTT and a half.
func TestGapTrackerUnknownRTT(t *testing.T) {
	c := newGapClock(t, 0)
	c.recv(0, 100, arrivalNew)
	c.recv(40, 102, arrivalNew)
	retry := int((defaultRTT + defaultRTT/2) / time.Millisecond)
	for i := range maxNACKs {
		c.due(40+i*retry-1, nil, 0)
		c.due(40+i*retry, []uint16{101}, 0)
	}
	c.due(40+maxNACKs*retry-1, nil, 0)
	c.due(40+maxNACKs*retry, nil, 1)
	// A long round trip stretches the schedule; a tiny one is floored.
	if r := retryAfter(200 * time.Millisecond); r != 300*time.Millisecond {
		t.Errorf("retryAfter(200ms) = %v", r)
	}
	if r := retryAfter(time.Millisecond); r != minRetry {
		t.Errorf("retryAfter(1ms) = %v", r)
	}
}

func TestAppendNACKPairs(t *testing.T) {
	pairs := appendNACKPairs(nil, []uint16{65534, 65535, 1, 16, 17, 300})
	got := fmt.Sprintf("%+v", pairs)
	// 65535 and 1 are 1 and 3 after 65534 (bits 0 and 2); 16 is 18 after,
	// beyond the mask, so it starts a pair, with 17 in its bit 0.
	want := fmt.Sprintf("%+v", []struct{ PacketID, LostPackets uint16 }{
		{65534, 1<<0 | 1<<2},
		{16, 1 << 0},
		{300, 0},
	})
	if got != want {
		t.Errorf("pairs %s, want %s", got, want)
	}
	b, err := rtcp.Marshal([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: 7, Nacks: pairs}})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint16
	forEachNACK(b, func(_ uint32, seq uint16) { seqs = append(seqs, seq) })
	if want := []uint16{65534, 65535, 1, 16, 17, 300}; !slices.Equal(seqs, want) {
		t.Errorf("round trip through RTCP: %v, want %v", seqs, want)
	}
}

// BenchmarkGapTracker is the per-packet cost of upstream loss repair in the
// forwarding loop, with 5 % of packets lost and asked for: it must not
// allocate (run with -benchmem).
func BenchmarkGapTracker(b *testing.B) {
	var g gapTracker
	now := time.Unix(1700000000, 0)
	dst := make([]uint16, 0, maxRepairGap)
	nacks := 0
	b.ReportAllocs()
	for i := range b.N {
		now = now.Add(20 * time.Millisecond)
		if i%20 == 7 {
			continue // lost, and never repaired
		}
		g.receive(uint16(i), now)
		var n []uint16
		n, _ = g.due(now, 5*time.Millisecond, dst[:0])
		nacks += len(n)
	}
	b.ReportMetric(float64(nacks)/float64(b.N), "nacks/pkt")
}
