// Package testserver runs a complete Sotto server (server.New: signaling,
// media relay, the browser client, /metrics and, on request, TURN) on the
// loopback interface for tests: real HTTP, WebSocket and UDP on ephemeral
// ports, a random secret and a short drop timeout.
package testserver

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/media"
	"github.com/sotto-voice/sotto/server"
	"github.com/sotto-voice/sotto/signaling"
	"github.com/sotto-voice/sotto/turn"
)

// DefaultDropTimeout is the drop timeout of a test server when Options
// leave it zero: short, so tests of vanished participants finish quickly.
const DefaultDropTimeout = 2 * time.Second

// Options adjust a test server. The zero value is ready to use.
type Options struct {
	// DropTimeout is how long a participant may lack an event stream before
	// it is dropped; 0 means DefaultDropTimeout.
	DropTimeout time.Duration
	// MaxParticipants per room; 0 means the signaling default.
	MaxParticipants int
	// KnockTimeout is how long a guest's knock waits for an answer; 0
	// means the signaling default.
	KnockTimeout time.Duration
	// TURN starts the embedded TURN server on loopback (Server.TURN), as
	// "sotto serve" does, and offers its STUN and TURN URLs to every
	// participant.
	TURN bool
	// TURNTransport, if "udp" or "tcp", offers only the TURN URLs with that
	// transport, so that a relay-only caller reaches TURN over it.
	TURNTransport string
	// MaxBlobBytes and RoomBlobBytes cap one stored file and a room's
	// files; 0 means the signaling defaults.
	MaxBlobBytes, RoomBlobBytes int
	// MetricsToken guards /metrics; empty leaves it open.
	MetricsToken string
	// Logger receives the server's logs. Nil logs errors to stderr, or
	// everything down to debug when the SOTTO_TEST_DEBUG environment
	// variable is set.
	Logger *slog.Logger
}

// Server is a running test server.
type Server struct {
	// URL is the base URL of the HTTP API, such as "http://127.0.0.1:43521".
	URL       string
	Secret    []byte
	Signaling *signaling.Server
	Media     *media.Engine
	TURN      *turn.Server // nil unless Options.TURN

	tb  testing.TB
	srv *server.Server
}

// Start starts a server and stops it when tb's test ends. It fails the test
// if the server cannot start.
func Start(tb testing.TB, opts *Options) *Server {
	tb.Helper()
	s, err := New(opts)
	if err != nil {
		tb.Fatalf("start test server: %v", err)
	}
	s.tb = tb
	tb.Cleanup(s.Close)
	return s
}

// New starts a server; the caller must Close it.
func New(opts *Options) (*Server, error) {
	if opts == nil {
		opts = &Options{}
	}
	log := opts.Logger
	if log == nil {
		log = defaultLogger()
	}
	drop := opts.DropTimeout
	if drop <= 0 {
		drop = DefaultDropTimeout
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	cfg := server.Config{
		Secret:          secret,
		HTTP:            server.HTTPConfig{Addr: "127.0.0.1:0"},
		Media:           server.MediaConfig{IP: "127.0.0.1"},
		TURN:            server.TURNConfig{Off: !opts.TURN},
		MaxParticipants: opts.MaxParticipants,
		MaxBlobBytes:    opts.MaxBlobBytes,
		RoomBlobBytes:   opts.RoomBlobBytes,
		DropTimeout:     drop,
		KnockTimeout:    opts.KnockTimeout,
		MetricsToken:    opts.MetricsToken,
		Logger:          log,
	}
	if opts.TURNTransport != "" {
		cfg.TURN.Transports = []string{opts.TURNTransport}
	}
	srv, err := server.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("testserver: %w", err)
	}
	srv.Start()
	return &Server{
		URL:       srv.URL(),
		Secret:    secret,
		Signaling: srv.Signaling(),
		Media:     srv.Media(),
		TURN:      srv.TURN(),
		srv:       srv,
	}, nil
}

func defaultLogger() *slog.Logger {
	level := slog.LevelError
	var w io.Writer = os.Stderr
	if os.Getenv("SOTTO_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// Token returns a token admitting identity to room for an hour. Invalid
// names fail the test (or panic for a server made with New): they are
// mistakes in the test itself.
func (s *Server) Token(room, identity string) string {
	tok, err := s.srv.Token(room, identity, time.Hour)
	if err != nil {
		if s.tb != nil {
			s.tb.Helper()
			s.tb.Fatalf("testserver: %v", err)
		}
		panic(fmt.Sprintf("testserver: %v", err))
	}
	return tok
}

// Addr returns the host:port of the HTTP API.
func (s *Server) Addr() net.Addr { return s.srv.Addr() }

// Close stops the server: participants are told it is shutting down, then
// the HTTP listener, TURN and the media sockets close.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		// A goroutine of the engine outlived its peers: a leak.
		s.report("testserver: %v after %v", err, closeTimeout)
	}
}

// closeTimeout bounds Close, so that a hung engine fails a test instead of
// hanging the test binary.
const closeTimeout = 15 * time.Second

// report fails the test, or logs for a server made with New.
func (s *Server) report(format string, args ...any) {
	if s.tb != nil {
		s.tb.Errorf(format, args...)
		return
	}
	slog.Default().Error(fmt.Sprintf(format, args...))
}
