package metrics_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/client"
	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/metrics"
	"github.com/sotto-voice/sotto/metrics/scrape"
)

const token = "metrics-test-token"

// server is a real Sotto server (signaling, media, TURN) with /metrics.
type server struct {
	*testserver.Server
	metricsURL string
}

func start(t *testing.T) *server {
	t.Helper()
	s := &server{Server: testserver.Start(t, &testserver.Options{TURN: true, MetricsToken: token})}
	s.metricsURL = s.URL + "/metrics"
	return s
}

func (s *server) scrape(t *testing.T) scrape.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	snap, err := scrape.Fetch(ctx, nil, s.metricsURL, token)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func (s *server) join(t *testing.T, room, identity string, relayOnly bool) *client.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	c, err := client.Join(ctx, s.URL, s.Token(room, identity), &client.Options{
		IPFilter:  func(ip net.IP) bool { return ip.IsLoopback() },
		RelayOnly: relayOnly,
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("join %s: %v", identity, err)
	}
	t.Cleanup(func() { c.Leave() })
	return c
}

func TestMetricsMoveDuringACall(t *testing.T) {
	s := start(t)

	before := s.scrape(t)
	for _, name := range []string{
		"sotto_rooms", "sotto_participants", "sotto_tracks",
		"sotto_rtp_packets_received_total", "sotto_rtp_bytes_received_total",
		"sotto_rtp_packets_forwarded_total", "sotto_rtp_bytes_forwarded_total",
		`sotto_rtp_packets_dropped_total{reason="unknown_ssrc"}`,
		`sotto_rtp_packets_dropped_total{reason="no_subscriber"}`,
		`sotto_rtp_packets_dropped_total{reason="write_error"}`,
		"sotto_nacks_answered_total",
		`sotto_rtp_packets_dropped_total{reason="duplicate"}`,
		"sotto_upstream_nacks_total", "sotto_upstream_recovered_total", "sotto_upstream_given_up_total",
		"sotto_joins_total", `sotto_join_failures_total{reason="unauthorized"}`,
		"sotto_envelopes_relayed_total", `sotto_envelopes_refused_total{reason="unknown_recipient"}`,
		"sotto_turn_allocations", "sotto_turn_allocations_created_total",
		"sotto_http_connections", `sotto_http_connections_refused_total{reason="per_ip"}`,
		`sotto_http_connections_refused_total{reason="total"}`,
		"process_cpu_seconds_total", "go_goroutines",
	} {
		if _, ok := before[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	alice := s.join(t, "standup", "alice", false)
	bob := s.join(t, "standup", "bob", true) // through TURN

	// A refused join: a token signed with another secret.
	resp, err := http.Post(s.URL+"/v1/rooms/standup/join", "application/json", strings.NewReader(`{"sdp":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	if err := alice.SendEnvelope(ctx, bob.ID(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := alice.SendEnvelope(ctx, "p_nobodyhere0", []byte("lost")); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		frame := []byte{0xf8, 0xff, 0xfe}
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				alice.WriteFrame(frame, 20*time.Millisecond)
				bob.WriteFrame(frame, 20*time.Millisecond)
			}
		}
	}()
	defer func() { close(stop); <-done }()

	var during scrape.Snapshot
	wait.For(t, "the metrics to show forwarded packets both ways", func() bool {
		during = s.scrape(t)
		return during["sotto_rtp_packets_forwarded_total"] >= before["sotto_rtp_packets_forwarded_total"]+20 &&
			during["sotto_envelopes_relayed_total"] >= 1 &&
			during[`sotto_envelopes_refused_total{reason="unknown_recipient"}`] >= 1
	})
	checks := []struct {
		name string
		min  float64
	}{
		{"sotto_rooms", 1},
		{"sotto_participants", 2},
		{"sotto_tracks", 2},
		{"sotto_rtp_packets_received_total", 20},
		{"sotto_rtp_bytes_received_total", 20 * 12},
		{"sotto_rtp_bytes_forwarded_total", 20 * 12},
		{"sotto_joins_total", 2},
		{`sotto_join_failures_total{reason="unauthorized"}`, 1},
		{"sotto_turn_allocations_created_total", 1},
		{"sotto_turn_allocations", 1},
	}
	for _, c := range checks {
		if got := during[c.name] - before[c.name]; got < c.min {
			t.Errorf("%s moved by %v, want at least %v", c.name, got, c.min)
		}
	}
	// Both callers' event streams, at least, are open connections.
	if during["sotto_http_connections"] < 2 {
		t.Errorf("sotto_http_connections = %v, want at least 2", during["sotto_http_connections"])
	}
	if during["process_cpu_seconds_total"] <= 0 {
		t.Errorf("process_cpu_seconds_total = %v", during["process_cpu_seconds_total"])
	}
}

func TestMetricsToken(t *testing.T) {
	s := start(t)
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", "Basic " + token} {
		req, _ := http.NewRequest(http.MethodGet, s.metricsURL, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status %d, want 401", auth, resp.StatusCode)
		}
	}
	if snap := s.scrape(t); snap.Sum("go_goroutines") <= 0 {
		t.Errorf("scrape with the token: no go_goroutines")
	}
}

func TestSnapshotSum(t *testing.T) {
	reg := metrics.NewRegistry(metrics.Sources{})
	hs := httptest.NewServer(metrics.Handler(reg, ""))
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	snap, err := scrape.Fetch(ctx, nil, hs.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	if snap.Sum("process_cpu_seconds_total") <= 0 {
		t.Error("no process CPU in a registry without sources")
	}
	if _, ok := snap["sotto_rooms"]; ok {
		t.Error("sotto_rooms exported without a media source")
	}
}
