package loadtest

import (
	"testing"

	"github.com/sotto-voice/sotto/metrics/scrape"
)

func TestServerCountersAcrossRestarts(t *testing.T) {
	var sc serverCounters
	dropped := droppedPackets + `{reason="unknown_ssrc"}`
	steps := []struct {
		snap     scrape.Snapshot
		restarts int
		cpu      float64
		fwd      float64
		drops    float64
	}{
		// The first scrape is the baseline.
		{scrape.Snapshot{startTime: 1000, cpuSeconds: 10, forwardedPackets: 5000, dropped: 3}, 0, 0, 0, 0},
		{scrape.Snapshot{startTime: 1000, cpuSeconds: 12, forwardedPackets: 9000, dropped: 4}, 0, 2, 4000, 1},
		// The exporter's start time moves by under a second: same process.
		{scrape.Snapshot{startTime: 1000.6, cpuSeconds: 12.5, forwardedPackets: 9500, dropped: 4}, 0, 2.5, 4500, 1},
		// Killed and restarted: every counter starts again from zero, and
		// what it counts now is added, never subtracted.
		{scrape.Snapshot{startTime: 1060, cpuSeconds: 0.25, forwardedPackets: 100}, 1, 2.75, 4600, 1},
		// A series the new process had not exported yet starts from zero.
		{scrape.Snapshot{startTime: 1060, cpuSeconds: 1.25, forwardedPackets: 1100, dropped: 2}, 1, 3.75, 5600, 3},
		// Restarted again and already past the old counts: only the start
		// time tells.
		{scrape.Snapshot{startTime: 1090, cpuSeconds: 2, forwardedPackets: 2000, dropped: 5}, 2, 5.75, 7600, 8},
		// Without a start time, a counter going backwards still tells.
		{scrape.Snapshot{cpuSeconds: 3, forwardedPackets: 2500, dropped: 5}, 2, 6.75, 8100, 8},
		{scrape.Snapshot{cpuSeconds: 3.5, forwardedPackets: 10, dropped: 5}, 3, 10.25, 8110, 13},
	}
	for i, s := range steps {
		sc.observe(s.snap)
		got := []float64{float64(sc.restarts), sc.total(cpuSeconds), sc.total(forwardedPackets), sc.total(droppedPackets)}
		want := []float64{float64(s.restarts), s.cpu, s.fwd, s.drops}
		for j := range got {
			if diff := got[j] - want[j]; diff > 1e-9 || diff < -1e-9 {
				t.Errorf("scrape %d: restarts, cpu, forwarded, dropped = %v, want %v", i, got, want)
				break
			}
		}
	}
}
