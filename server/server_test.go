package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/token"
)

func TestNewRequiresSecret(t *testing.T) {
	var ce *ConfigError
	if _, err := New(Config{}); !errors.As(err, &ce) || ce.Field != "Secret" {
		t.Fatalf("New without a secret: %v", err)
	}
}

// A server from New serves the API, the browser client and /metrics on
// one listener, mints tokens it accepts, and stops with Shutdown.
func TestServerServesAndShutsDown(t *testing.T) {
	s, err := New(Config{
		Secret:       []byte("server-test-secret-0123456789"),
		Media:        MediaConfig{IP: "127.0.0.1"},
		TURN:         TURNConfig{Off: true},
		MetricsToken: "metrics-token",
		Logger:       discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") || s.URL() != "http://"+s.Addr().String() {
		t.Fatalf("URL %q, listener %s", s.URL(), s.Addr())
	}
	if s.TURN() != nil || s.Media() == nil || s.Signaling() == nil {
		t.Fatal("accessors: TURN should be off, media and signaling on")
	}
	if _, err := New(Config{Secret: []byte("server-test-secret-0123456789"), HTTP: HTTPConfig{Addr: s.Addr().String()}, Logger: discard}); err == nil ||
		!strings.HasPrefix(err.Error(), "HTTP.Addr: ") {
		t.Errorf("second server on the same address: %v", err)
	}

	get := func(path, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, s.URL()+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	tok, err := s.Token("r1", "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := token.Verify([]byte("server-test-secret-0123456789"), tok, "r1", time.Now()); err != nil {
		t.Errorf("Token: %v", err)
	}
	for _, c := range []struct {
		path, auth, want string
		status           int
	}{
		{"/healthz", "", `"ok"`, http.StatusOK},
		{"/v1/ice-servers", tok, `"ice_servers"`, http.StatusOK},
		{"/", "", `src="/app.js"`, http.StatusOK},
		{"/metrics", "", "", http.StatusUnauthorized},
		{"/metrics", "metrics-token", "sotto_http_connections ", http.StatusOK},
		{"/debug/pprof/", "metrics-token", "", http.StatusNotFound}, // pprof is off
	} {
		status, body := get(c.path, c.auth)
		if status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d, want %d with %q", c.path, status, c.status, c.want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("still listening after Shutdown")
	}
}
