package loadtest

import (
	"testing"
	"time"
)

func TestProgressLineShowsTheLastIntervalsLoss(t *testing.T) {
	var m lossMeter
	for i, c := range []struct {
		expected, received uint64 // running counts
		want               string
	}{
		{1000, 1000, "loss 0.00% last 1s, 0.00% overall"},
		// Frames sent late in one interval arrive in the next.
		{2000, 1990, "loss 1.00% last 1s, 0.50% overall"},
		{3000, 3000, "loss 0.00% last 1s, 0.00% overall"},
		// The server is gone: frames are sent, none arrives. The average
		// over the run hides it; the last interval does not.
		{4000, 3000, "loss 100.00% last 1s, 25.00% overall"},
		// The calls have ended: nothing is sent, nothing expected.
		{4000, 3000, "loss - last 1s, 25.00% overall"},
	} {
		if got := m.next(c.expected, c.received, time.Second); got != c.want {
			t.Errorf("interval %d: %q, want %q", i, got, c.want)
		}
	}
	if got := lossPct(0, 0); got != "-" {
		t.Errorf("nothing expected: %q", got)
	}
}
