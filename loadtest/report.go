package loadtest

import (
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sotto-voice/sotto/client"
)

// Report is the outcome of a run. The JSON field names are a stable
// interface (scripts and CI read them); fields may be added.
type Report struct {
	CallersJoined int `json:"callers_joined"`
	// CallersFailed counts callers with a failed join; with churn, a
	// caller whose rejoin failed counts here and in CallersJoined.
	CallersFailed int         `json:"callers_failed"`
	JoinMS        Percentiles `json:"join_ms"`
	LatencyMS     Percentiles `json:"latency_ms"`
	LossPct       float64     `json:"loss_pct"`
	JitterMS      float64     `json:"jitter_ms"`
	FramesSent    uint64      `json:"frames_sent"`
	// FramesReceived counts frames delivered to callers by the SDK, that
	// is decrypted when the SDK encrypts.
	FramesReceived  uint64 `json:"frames_received"`
	DecryptFailures uint64 `json:"decrypt_failures"`
	Rekeys          uint64 `json:"rekeys"`

	// CallsInterrupted counts interruptions of callers' calls: a call that
	// ended without the load tester ending it, or whose incoming frames
	// stopped for longer than StallAfterMS while another publisher was in
	// the room. A caller interrupted twice counts twice.
	CallsInterrupted int `json:"calls_interrupted"`
	// CallsLost counts callers whose last interruption never recovered by
	// the end of the run: their call was lost for good, and the run fails.
	CallsLost int `json:"calls_lost"`
	// Rejoins counts callers joined again after the server lost their
	// call: by the SDK itself, or by the load tester after the call ended
	// (Rejoin); RejoinFailures counts the load tester's attempts that
	// failed on the way.
	Rejoins        uint64 `json:"rejoins"`
	RejoinFailures uint64 `json:"rejoin_failures"`
	// RecoveryMS is the length of each recovered interruption: from the
	// last frame received before it (or the call's end, for a caller
	// expecting none) to the first frame received after it (or being back
	// in a call).
	RecoveryMS   Percentiles `json:"recovery_ms"`
	StallAfterMS float64     `json:"stall_after_ms"`
	Rejoin       bool        `json:"rejoin"`

	// Server figures: growth of its /metrics counters between the moment
	// every caller had joined and the end of the run's steady part, added
	// up over every server process (see ServerRestarts).
	ServerCPUSeconds              float64 `json:"server_cpu_seconds"`
	ForwardedPackets              uint64  `json:"forwarded_packets"`
	ServerCPUUsPerForwardedPacket float64 `json:"server_cpu_us_per_forwarded_packet"`

	// More detail.
	Rooms          int     `json:"rooms"`
	CallersPerRoom int     `json:"callers_per_room"`
	RelayOnly      bool    `json:"relay_only"`
	Churn          bool    `json:"churn"`
	DurationS      float64 `json:"duration_s"` // steady part
	ElapsedS       float64 `json:"elapsed_s"`  // whole run, ramp and leave included
	Joins          int     `json:"joins"`      // participations, rejoins included
	// JoinErrors counts failed joins by API error code ("timeout",
	// "error" for other failures).
	JoinErrors     map[string]int `json:"join_errors,omitempty"`
	FramesExpected uint64         `json:"frames_expected"`
	FramesLost     uint64         `json:"frames_lost"`
	// FramesUnmatched were received but not found among the frames sent
	// (their latency and place in the sequence are unknown).
	FramesUnmatched uint64 `json:"frames_unmatched"`
	// SilentPairs are (receiver, sender) pairs that overlapped for longer
	// than the settle time and delivered nothing; their frames are lost.
	SilentPairs    int     `json:"silent_pairs"`
	WriteErrors    uint64  `json:"write_errors"`
	LatencySamples uint64  `json:"latency_samples"`
	LoadCPUSeconds float64 `json:"load_cpu_seconds"` // the load tester's own
	// CPUs and LoadAverage (the 1-minute load average at the end of the
	// steady part, from /proc/loadavg; 0 where unknown) say how busy the
	// machine was: figures from a machine shared with other work are
	// worse than the relay's own.
	CPUs          int     `json:"cpus"`
	LoadAverage   float64 `json:"load_average"`
	ServerDropped uint64  `json:"server_dropped_packets"`
	ServerNACKs   uint64  `json:"server_nacks_answered"`
	// ServerTURNAllocations are the TURN allocations the server created
	// during the run, joins included.
	ServerTURNAllocations uint64 `json:"server_turn_allocations"`
	// Injected loss (Config.LossUp, LossDown), in percent, the packets the
	// callers' sockets dropped each way, and the relay's repair of the
	// uplink's: packets asked of publishers again, recovered, given up.
	LossUpPct               float64 `json:"loss_up_pct,omitempty"`
	LossDownPct             float64 `json:"loss_down_pct,omitempty"`
	InjectedDroppedUp       uint64  `json:"injected_dropped_up,omitempty"`
	InjectedDroppedDown     uint64  `json:"injected_dropped_down,omitempty"`
	ServerUpstreamNACKs     uint64  `json:"server_upstream_nacks"`
	ServerUpstreamRecovered uint64  `json:"server_upstream_recovered"`
	ServerUpstreamGivenUp   uint64  `json:"server_upstream_given_up"`
	// ServerRestarts counts the times the server's counters went backwards
	// or its process start time changed between two scrapes (one a second):
	// a new server process, whose counts are added from zero. What a dead
	// process counted after its last scrape is missing from the figures.
	ServerRestarts int `json:"server_restarts"`
	// ServerScrapesFailed counts scrapes of /metrics that failed during
	// the run (the server down or not answering).
	ServerScrapesFailed int `json:"server_scrapes_failed"`
	// ServerMetricsErr says why the server figures are missing: fewer than
	// two scrapes succeeded.
	ServerMetricsErr string `json:"server_metrics_error,omitempty"`
	// E2EECounters is false when the SDK does not count decrypt failures
	// and rekeys, in which case DecryptFailures and Rekeys are 0 by
	// absence, not by measurement.
	E2EECounters bool `json:"e2ee_counters"`
	// KeyMS is the time from the later of two participants' joins to
	// each one's frame key being in place at the other (PeerEncrypted).
	KeyMS Percentiles `json:"key_ms"`
	// AwaitingKey counts frames dropped because their key had not arrived
	// yet: expected right after joins and rekeys, and not a failure.
	AwaitingKey     uint64 `json:"frames_awaiting_key"`
	FramesDecrypted uint64 `json:"frames_decrypted"`
	IdentityChanges uint64 `json:"identity_changes"`
	// DroppedByReason sums the SDK's undelivered received frames by
	// reason (client.Drop*): DecryptFailures is all but awaiting_key and
	// identity_unverified.
	DroppedByReason map[string]uint64 `json:"dropped_by_reason,omitempty"`
	// SendPacePct is the frames sent as a share of one per 20 ms for as
	// long as each caller was in: under 100 when the load tester's
	// scheduler fell behind (a saturated machine), which a real client
	// would hear as gaps.
	SendPacePct float64 `json:"send_pace_pct"`
	// SDKFramesDropped are frames the SDK dropped because the load
	// tester read them too slowly (a sign the load machine is saturated).
	SDKFramesDropped uint64 `json:"sdk_frames_dropped"`

	// FloorUsPerForwardedPacket is the floor relay's CPU per forwarded
	// packet with this run's traffic (Config.Floor), and RatioToFloor the
	// server's figure divided by it.
	FloorUsPerForwardedPacket float64 `json:"floor_us_per_forwarded_packet,omitempty"`
	RatioToFloor              float64 `json:"ratio_to_floor,omitempty"`
	FloorError                string  `json:"floor_error,omitempty"`
	ServerProfileErr          string  `json:"server_profile_error,omitempty"`

	// Nodes, against a cluster, are its nodes one by one; the server
	// figures above are their sums.
	Nodes []NodeReport `json:"nodes,omitempty"`
	// JoinsRedirected counts joins answered first by a node that does not
	// run the room (wrong_node); JoinMSRedirected and JoinMSDirect time
	// those and the others.
	JoinsRedirected  int         `json:"joins_redirected"`
	JoinMSDirect     Percentiles `json:"join_ms_direct"`
	JoinMSRedirected Percentiles `json:"join_ms_redirected"`

	Timeline         []Sample `json:"timeline,omitempty"`
	LatencyHistogram []uint64 `json:"-"` // 0.1 ms buckets, for plots
}

// Sample is one second of the run, for plots.
type Sample struct {
	T              float64 `json:"t"` // seconds since the start
	Joined         int64   `json:"joined"`
	FramesSent     uint64  `json:"frames_sent_per_s"`
	FramesReceived uint64  `json:"frames_received_per_s"`
	Interrupted    int64   `json:"interrupted"` // callers interrupted then
}

// Failed reports whether the run missed its basic bar: a caller could not
// join, a frame could not be decrypted, or a call was lost for good.
func (rep *Report) Failed() bool {
	return rep.CallersFailed > 0 || rep.DecryptFailures > 0 || rep.CallsLost > 0
}

func (r *loadRun) report() *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg := r.cfg
	rep := &Report{
		CallersFailed:  len(r.failed),
		JoinMS:         percentilesOf(r.joinTimes),
		FramesSent:     r.sent.Load(),
		FramesReceived: r.received.Load(),
		Rooms:          cfg.Rooms,
		CallersPerRoom: cfg.Callers,
		RelayOnly:      cfg.RelayOnly,
		Churn:          cfg.Churn,
		Joins:          len(r.parts),
		JoinErrors:     r.joinErrs,
		WriteErrors:    r.writeErrors.Load(),
		Rejoins:        r.rejoins.Load(),
		RejoinFailures: r.rejoinFailures.Load(),
		StallAfterMS:   ms(cfg.StallAfter),
		Rejoin:         cfg.Rejoin,
	}
	if len(rep.JoinErrors) == 0 {
		rep.JoinErrors = nil
	}
	rep.LatencyMS, rep.LatencySamples = r.latency.percentiles()
	rep.LatencyHistogram = r.latency.counts()

	// A caller counts as joined if it joined at least once, and as failed
	// if a join of it failed: a caller whose rejoin failed (churn) is both.
	joined := map[*caller]bool{}
	var nominal float64
	rep.E2EECounters = true
	for _, p := range r.parts {
		joined[p.caller] = true
		e := e2eeCountersOf(p.stats)
		rep.E2EECounters = rep.E2EECounters && e.ok
		rep.DecryptFailures += e.decryptFailures
		rep.Rekeys += e.rekeys
		rep.SDKFramesDropped += p.stats.FramesDropped
		rep.AwaitingKey += p.stats.Dropped[client.DropAwaitingKey]
		rep.FramesDecrypted += p.stats.FramesDecrypted
		for reason, n := range p.stats.Dropped {
			if n > 0 {
				if rep.DroppedByReason == nil {
					rep.DroppedByReason = map[string]uint64{}
				}
				rep.DroppedByReason[reason] += n
			}
		}
		p.snd.mu.Lock()
		if p.snd.left > p.joinedAt {
			nominal += float64(p.snd.left-p.joinedAt) / float64(FrameDuration)
		}
		p.snd.mu.Unlock()
	}
	rep.CallersJoined = len(joined)
	if nominal > 0 {
		rep.SendPacePct = round3(100 * float64(rep.FramesSent) / nominal)
	}
	rep.KeyMS = percentilesOf(r.keyTimes)
	rep.IdentityChanges = r.identityChanges.Load()
	if len(r.parts) == 0 {
		rep.E2EECounters = false
	}

	var jitterSum float64
	var jitterN int
	for _, rp := range r.parts {
		for _, sp := range r.parts {
			if sp.caller == rp.caller || sp.caller.room != rp.caller.room {
				continue
			}
			s := sp.snd
			s.mu.Lock()
			left := s.left
			s.mu.Unlock()
			start := max(rp.joinedAt, sp.joinedAt)
			end := min(rp.leaving, left)
			if end <= start {
				continue
			}
			pr := rp.pairs[sp.id]
			var expected, got uint64
			if pr != nil && pr.received > pr.unmatched {
				got = pr.received - pr.unmatched
				last := pr.highest
				if n, ok := s.lastSentBefore(end - int64(tailGrace)); ok {
					last = max(last, n)
				}
				expected = last - pr.first + 1
			} else {
				expected = s.sentBetween(start+int64(settle), end-int64(tailGrace))
				if expected > 0 {
					rep.SilentPairs++
				}
			}
			if pr != nil {
				rep.FramesUnmatched += pr.unmatched
				if pr.received > 1 {
					jitterSum += pr.jitter / 48 // RTP units at 48 kHz to ms
					jitterN++
				}
			}
			rep.FramesExpected += expected
			if expected > got {
				rep.FramesLost += expected - got
			}
		}
	}
	if rep.FramesExpected > 0 {
		rep.LossPct = round3(100 * float64(rep.FramesLost) / float64(rep.FramesExpected))
	}
	if jitterN > 0 {
		rep.JitterMS = round3(jitterSum / float64(jitterN))
	}

	var recovery []time.Duration
	for _, in := range r.interruptions {
		rep.CallsInterrupted++
		if in.end == 0 {
			rep.CallsLost++
		} else {
			recovery = append(recovery, time.Duration(in.end-in.start))
		}
	}
	rep.RecoveryMS = percentilesOf(recovery)
	return rep
}

// serverFigures fills in the server's figures: the growth of its counters
// from before (totals when every caller had joined) to after (at the end
// of the steady part), TURN allocations from the first scrape.
func (r *loadRun) serverFigures(rep *Report, w *serverWatch, before, after map[string]float64) {
	r.reportLoss(rep, before, after)
	w.mu.Lock()
	defer w.mu.Unlock()
	rep.ServerRestarts = w.restarts()
	rep.ServerScrapesFailed = w.failed
	if w.ok < 2 {
		err := w.lastErr
		if err == nil {
			err = errors.New("no scrape of /metrics")
		}
		rep.ServerMetricsErr = err.Error()
		return
	}
	grew := func(name string) float64 { return after[name] - before[name] }
	rep.ServerCPUSeconds = round3(grew(cpuSeconds))
	rep.ForwardedPackets = uint64(grew(forwardedPackets))
	rep.ServerDropped = uint64(grew(droppedPackets))
	rep.ServerNACKs = uint64(grew(nacksAnswered))
	rep.ServerTURNAllocations = uint64(after[turnAllocations])
	if rep.ForwardedPackets > 0 {
		rep.ServerCPUUsPerForwardedPacket = round3(rep.ServerCPUSeconds * 1e6 / float64(rep.ForwardedPackets))
	}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// WriteTable prints the report for people.
func (rep *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	pct := func(p Percentiles) string {
		return fmt.Sprintf("p50 %.1f  p95 %.1f  p99 %.1f  max %.1f", p.P50, p.P95, p.P99, p.Max)
	}
	mode := "direct"
	if rep.RelayOnly {
		mode = "TURN relay"
	}
	if rep.Churn {
		mode += ", churn"
	}
	if rep.LossUpPct > 0 || rep.LossDownPct > 0 {
		mode += fmt.Sprintf(", loss %.1f %% up %.1f %% down", rep.LossUpPct, rep.LossDownPct)
	}
	row("load", "%d rooms x %d callers, %.0f s steady (%s)", rep.Rooms, rep.CallersPerRoom, rep.DurationS, mode)
	row("callers joined", "%d (failed %d%s)", rep.CallersJoined, rep.CallersFailed, joinErrors(rep.JoinErrors))
	row("join ms", "%s", pct(rep.JoinMS))
	row("latency ms", "%s  (%d frames)", pct(rep.LatencyMS), rep.LatencySamples)
	row("loss", "%.3f %%  (%d of %d expected, %d silent pairs)", rep.LossPct, rep.FramesLost, rep.FramesExpected, rep.SilentPairs)
	row("jitter ms", "%.2f", rep.JitterMS)
	row("frames", "sent %d (%.1f %% of real-time pace), received %d", rep.FramesSent, rep.SendPacePct, rep.FramesReceived)
	row("interruptions", "%s", interruptions(rep))
	if rep.E2EECounters {
		row("e2ee", "decrypt failures %d, rekeys %d, %d frames awaiting key, %d identity changes", rep.DecryptFailures, rep.Rekeys, rep.AwaitingKey, rep.IdentityChanges)
		if rep.DecryptFailures > 0 {
			row("e2ee drops", "%s", dropReasons(rep.DroppedByReason))
		}
		row("key ms", "%s  (join to each peer's frame key)", pct(rep.KeyMS))
	} else {
		row("e2ee", "the SDK does not count decrypt failures and rekeys: not measured")
	}
	if rep.ServerMetricsErr != "" {
		row("server", "no figures: %s", rep.ServerMetricsErr)
	} else {
		row("server cpu", "%.2f s for %d forwarded packets: %.2f µs per forwarded packet", rep.ServerCPUSeconds, rep.ForwardedPackets, rep.ServerCPUUsPerForwardedPacket)
		if rep.ServerRestarts > 0 || rep.ServerScrapesFailed > 0 {
			row("server restarts", "%d seen, %d scrapes failed: figures add up every process, less what a dead one counted after its last scrape", rep.ServerRestarts, rep.ServerScrapesFailed)
		}
		row("server drops", "%d packets dropped, %d NACKs answered", rep.ServerDropped, rep.ServerNACKs)
		if rep.LossUpPct > 0 || rep.LossDownPct > 0 || rep.ServerUpstreamNACKs > 0 {
			row("upstream repair", "%d packets dropped up, %d down by the callers' sockets; the relay asked %d times, recovered %d, gave up %d",
				rep.InjectedDroppedUp, rep.InjectedDroppedDown, rep.ServerUpstreamNACKs, rep.ServerUpstreamRecovered, rep.ServerUpstreamGivenUp)
		}
		if rep.RelayOnly {
			row("server turn", "%d allocations", rep.ServerTURNAllocations)
		}
	}
	row("load tester cpu", "%.2f s (machine: %d CPUs, load average %.2f)", rep.LoadCPUSeconds, rep.CPUs, rep.LoadAverage)
	if rep.ServerProfileErr != "" {
		row("server profile", "not taken: %s", rep.ServerProfileErr)
	}
	switch {
	case rep.FloorError != "":
		row("floor", "not measured: %s", rep.FloorError)
	case rep.FloorUsPerForwardedPacket > 0:
		row("floor", "%.2f µs per forwarded packet; server/floor = %.2f", rep.FloorUsPerForwardedPacket, rep.RatioToFloor)
	}
	if rep.SDKFramesDropped > 0 || rep.WriteErrors > 0 || rep.FramesUnmatched > 0 {
		row("warnings", "%d frames dropped by slow readers, %d write errors, %d unmatched frames", rep.SDKFramesDropped, rep.WriteErrors, rep.FramesUnmatched)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	rep.writeNodes(w)
	return nil
}

func interruptions(rep *Report) string {
	if rep.CallsInterrupted == 0 {
		return fmt.Sprintf("none (no call ended, no frames stopped for %.1f s)", rep.StallAfterMS/1000)
	}
	s := fmt.Sprintf("%d, %d recovered, %d lost for good; %d rejoins (%d failed attempts)",
		rep.CallsInterrupted, rep.CallsInterrupted-rep.CallsLost, rep.CallsLost, rep.Rejoins, rep.RejoinFailures)
	if rep.CallsLost < rep.CallsInterrupted {
		p := rep.RecoveryMS
		s += fmt.Sprintf("; recovery ms p50 %.0f  p95 %.0f  max %.0f", p.P50, p.P95, p.Max)
	}
	return s
}

func dropReasons(m map[string]uint64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func joinErrors(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return ": " + strings.Join(parts, ", ")
}

// e2eeCounters are what the SDK reports about end-to-end encryption.
type e2eeCounters struct {
	decryptFailures, rekeys uint64
	ok                      bool
}

// e2eeCountersOf reads the SDK's end-to-end encryption counters.
func e2eeCountersOf(s client.Stats) e2eeCounters {
	return e2eeCounters{decryptFailures: s.DecryptFailures(), rekeys: s.Rekeys, ok: true}
}
