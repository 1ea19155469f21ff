package loadtest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/metrics"
)

// TestRunWithChurn runs callers in process (so the race detector sees the
// load tester's own concurrency) against a real server with /metrics.
func TestRunWithChurn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, serverConfig(t, Config{
		Rooms:         1,
		Callers:       3,
		Duration:      4 * time.Second,
		Ramp:          20,
		Churn:         true,
		ChurnInterval: time.Second,
	}))
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

// serverConfig completes cfg to run against a real server, started for the
// test, with its /metrics.
func serverConfig(t *testing.T, cfg Config) Config {
	srv := testserver.Start(t, nil)
	reg := metrics.NewRegistry(metrics.Sources{Media: srv.Media.Stats, Signaling: srv.Signaling.Stats})
	ms := httptest.NewServer(metrics.Handler(reg, "tok"))
	t.Cleanup(ms.Close)
	cfg.URL, cfg.Secret = srv.URL, srv.Secret
	cfg.MetricsURL, cfg.MetricsToken = ms.URL, "tok"
	cfg.Logger = slog.New(slog.DiscardHandler)
	return cfg
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
