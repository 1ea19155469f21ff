package loadtest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/metrics"
)

// serverWithMetrics starts a test server with its /metrics guarded by
// token and returns it with a Config for it.
func serverWithMetrics(t *testing.T, token string) (*testserver.Server, Config) {
	srv := testserver.Start(t, nil)
	reg := metrics.NewRegistry(metrics.Sources{Media: srv.Media.Stats, Signaling: srv.Signaling.Stats})
	ms := httptest.NewServer(metrics.Handler(reg, token))
	t.Cleanup(ms.Close)
	return srv, Config{
		URL:          srv.URL,
		Secret:       srv.Secret,
		MetricsURL:   ms.URL,
		MetricsToken: token,
		Logger:       slog.New(slog.DiscardHandler),
	}
}

// TestRunWithChurn runs callers in process (so the race detector sees the
// load tester's own concurrency) against a real server with /metrics.
func TestRunWithChurn(t *testing.T) {
	_, cfg := serverWithMetrics(t, "tok")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg.Rooms, cfg.Callers, cfg.Duration, cfg.Ramp = 1, 3, 4*time.Second, 20
	cfg.Churn, cfg.ChurnInterval = true, time.Second
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.CallersJoined != 3 || rep.CallersFailed != 0 {
		t.Errorf("joined %d, failed %d %v", rep.CallersJoined, rep.CallersFailed, rep.JoinErrors)
	}
	if rep.Joins < 5 {
		t.Errorf("%d joins: churn did not rejoin callers", rep.Joins)
	}
	if !rep.E2EECounters || rep.DecryptFailures != 0 || rep.Rekeys == 0 {
		t.Errorf("e2ee counters %v: %d decrypt failures, %d rekeys", rep.E2EECounters, rep.DecryptFailures, rep.Rekeys)
	}
	if rep.FramesReceived == 0 || rep.LatencySamples == 0 || rep.FramesUnmatched != 0 {
		t.Errorf("received %d, latency samples %d, unmatched %d", rep.FramesReceived, rep.LatencySamples, rep.FramesUnmatched)
	}
	if rep.ServerMetricsErr != "" || rep.ForwardedPackets == 0 {
		t.Errorf("server figures: %q, %d forwarded", rep.ServerMetricsErr, rep.ForwardedPackets)
	}
	if rep.IdentityChanges != 0 {
		t.Errorf("%d identity changes: callers must keep their key across rejoins", rep.IdentityChanges)
	}
}

func TestConfigErrors(t *testing.T) {
	for name, c := range map[string]Config{
		"no secret":  {},
		"one caller": {Secret: []byte("0123456789abcdef0123"), Callers: 1},
		"bad url":    {Secret: []byte("0123456789abcdef0123"), URL: "ftp://x"},
	} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestRunServerGone stops the server mid-run: every call ends (the SDK
// does not try to rejoin it), the load tester's rejoins find no server,
// and the run says the calls were lost.
func TestRunServerGone(t *testing.T) {
	srv, cfg := serverWithMetrics(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg.Rooms, cfg.Callers, cfg.Duration, cfg.Ramp = 1, 3, 6*time.Second, 20
	cfg.Rejoin, cfg.ResumeWindow = true, -1
	var rep *Report
	done := make(chan error, 1)
	go func() {
		var err error
		rep, err = Run(ctx, cfg)
		done <- err
	}()
	// Stop the server once audio flows between all three callers.
	wait.Until(ctx, t, "frames forwarded", func() bool { return srv.Media.Stats().PacketsForwarded > 300 })
	srv.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	rep.WriteTable(&table)
	t.Logf("report:\n%s", table.String())
	if rep.CallersJoined != 3 || rep.CallersFailed != 0 {
		t.Errorf("joined %d, failed %d %v", rep.CallersJoined, rep.CallersFailed, rep.JoinErrors)
	}
	if rep.CallsInterrupted != 3 || rep.CallsLost != 3 || !rep.Failed() {
		t.Errorf("%d calls interrupted, %d lost (run failed: %v); want 3, 3, failed", rep.CallsInterrupted, rep.CallsLost, rep.Failed())
	}
	if rep.Rejoins != 0 || rep.RejoinFailures == 0 {
		t.Errorf("%d rejoins, %d failed attempts; want 0 and some", rep.Rejoins, rep.RejoinFailures)
	}
	if rep.ServerRestarts != 0 || rep.ServerMetricsErr != "" || rep.ForwardedPackets == 0 {
		t.Errorf("server figures: %d restarts, %d forwarded, %q", rep.ServerRestarts, rep.ForwardedPackets, rep.ServerMetricsErr)
	}
}
