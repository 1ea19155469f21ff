package loadtest

import (
	"math"
	"strings"
	"sync"
	"time"

	"github.com/sotto-voice/sotto/metrics/scrape"
)

// The server's counters the report uses, and the gauge that tells one
// server process from the next.
const (
	cpuSeconds       = "process_cpu_seconds_total"
	forwardedPackets = "sotto_rtp_packets_forwarded_total"
	droppedPackets   = "sotto_rtp_packets_dropped_total"
	nacksAnswered    = "sotto_nacks_answered_total"
	turnAllocations  = "sotto_turn_allocations_created_total"
	upstreamNACKs    = "sotto_upstream_nacks_total"
	upstreamRepaired = "sotto_upstream_recovered_total"
	upstreamGivenUp  = "sotto_upstream_given_up_total"
	startTime        = "process_start_time_seconds"
)

var trackedCounters = []string{cpuSeconds, forwardedPackets, droppedPackets, nacksAnswered, turnAllocations,
	upstreamNACKs, upstreamRepaired, upstreamGivenUp}

// startTimeSlack is how far process_start_time_seconds may move without
// meaning a new process: the exporter derives it from the kernel's boot
// time, which can shift by a second.
const startTimeSlack = 1.0

// scrapeEvery is how often the server's /metrics is read during a run, so
// that a restart is seen and the counters of every process lifetime are
// added up.
const scrapeEvery = time.Second

// scrapeTimeout bounds one scrape: a server that does not answer is
// counted as a failed scrape, not waited for.
const scrapeTimeout = 5 * time.Second

// serverCounters adds up the server's counters over successive scrapes.
// A counter only grows within one process, so a counter that goes down, or
// a new process_start_time_seconds, means the server restarted: the new
// process's counts are then added from zero. What the old process counted
// after the scrape before its end died with it and is missing.
type serverCounters struct {
	last     scrape.Snapshot    // tracked series of the previous scrape
	started  float64            // process_start_time_seconds of the previous scrape
	totals   map[string]float64 // growth since the first scrape, by metric name
	restarts int
}

// observe takes the next scrape.
func (sc *serverCounters) observe(snap scrape.Snapshot) {
	cur := make(scrape.Snapshot)
	for series, v := range snap {
		if isTracked(series) {
			cur[series] = v
		}
	}
	started := snap[startTime]
	if sc.totals == nil {
		sc.last, sc.started, sc.totals = cur, started, make(map[string]float64)
		return
	}
	restarted := started != 0 && sc.started != 0 && math.Abs(started-sc.started) > startTimeSlack
	for series, v := range cur {
		if prev, ok := sc.last[series]; ok && v < prev {
			restarted = true
		}
	}
	if restarted {
		sc.restarts++
		sc.last = make(scrape.Snapshot)
	}
	for series, v := range cur {
		if grew := v - sc.last[series]; grew > 0 {
			sc.totals[metricName(series)] += grew
		}
		// A series absent from this scrape keeps its last value.
		sc.last[series] = v
	}
	sc.started = started
}

// total returns how much the metric grew over the scrapes observed, every
// server process included.
func (sc *serverCounters) total(name string) float64 { return sc.totals[name] }

func isTracked(series string) bool {
	name := metricName(series)
	for _, t := range trackedCounters {
		if name == t {
			return true
		}
	}
	return false
}

// metricName is a series' name without its labels.
func metricName(series string) string {
	if i := strings.IndexByte(series, '{'); i >= 0 {
		return series[:i]
	}
	return series
}

// serverWatch scrapes the server's /metrics through the run.
type serverWatch struct {
	r *loadRun

	// mu is held across a scrape, so scrapes are observed in order.
	mu       sync.Mutex
	counters map[string]*serverCounters // by cluster node id; "" for a server alone
	ok       int
	failed   int
	lastErr  error
	latest   *nodeScrape // the last scrape of every node of a cluster
}

// poll scrapes the server once.
func (w *serverWatch) poll() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	snap, nodes, err := w.r.scrape()
	if err != nil {
		w.failed++
		w.lastErr = err
		return err
	}
	w.ok++
	if nodes == nil {
		w.observe("", snap)
	} else {
		// Each node is a process of its own: its restarts and counters are
		// its own, and nodes seen later start from their first scrape.
		for id, s := range nodes.snaps {
			w.observe(id, s)
		}
	}
	w.latest = nodes
	return nil
}

func (w *serverWatch) observe(node string, snap scrape.Snapshot) {
	if w.counters == nil {
		w.counters = make(map[string]*serverCounters)
	}
	sc := w.counters[node]
	if sc == nil {
		sc = &serverCounters{}
		w.counters[node] = sc
	}
	sc.observe(snap)
}

// restarts counts the server processes (of every node) seen restarting.
func (w *serverWatch) restarts() int {
	n := 0
	for _, sc := range w.counters {
		n += sc.restarts
	}
	return n
}

// nodes returns the last scrape of a cluster's nodes; nil for a server
// alone.
func (w *serverWatch) nodes() *nodeScrape {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest
}

// run polls every scrapeEvery until stop is closed.
func (w *serverWatch) run(stop <-chan struct{}) {
	every(scrapeEvery, stop, func(time.Time) { w.poll() })
}

// every calls f with the time every d until stop is closed.
func every(d time.Duration, stop <-chan struct{}, f func(now time.Time)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			f(now)
		}
	}
}

// totals returns the growth of every tracked counter so far.
func (w *serverWatch) totals() map[string]float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[string]float64, len(trackedCounters))
	for _, name := range trackedCounters {
		for _, sc := range w.counters {
			m[name] += sc.total(name)
		}
	}
	return m
}
