// Package testserver runs a complete Sotto server (signaling, media relay
// and, on request, TURN) on the loopback interface for tests: real HTTP,
// WebSocket and UDP on ephemeral ports, a random secret and short timeouts.
package testserver

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/media"
	"github.com/sotto-voice/sotto/signaling"
	"github.com/sotto-voice/sotto/token"
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
	// ICEServers is passed to signaling.Config.ICEServers (for TURN tests).
	ICEServers func(identity string) []api.ICEServer
	// TURN starts an embedded TURN server on loopback (Server.TURN) that
	// admits the media server's UDP port as "sotto serve" does, and offers
	// its STUN and TURN URLs to every participant, ahead of ICEServers' list.
	TURN bool
	// TURNTransport, if "udp" or "tcp", offers only the TURN URLs with that
	// transport, so that a relay-only caller reaches TURN over it.
	TURNTransport string
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

	tb   testing.TB
	http *httptest.Server
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
	engine, err := media.NewEngine(media.Config{ListenIP: "127.0.0.1", Logger: log.With("component", "media")})
	if err != nil {
		return nil, err
	}
	iceServers := opts.ICEServers
	var ts *turn.Server
	if opts.TURN {
		if ts, err = startTURN(engine, opts.TURNTransport, log); err != nil {
			engine.Close()
			return nil, err
		}
		iceServers = func(identity string) []api.ICEServer {
			l := offered(ts.ICEServers(identity, 0), opts.TURNTransport)
			if opts.ICEServers != nil {
				l = append(l, opts.ICEServers(identity)...)
			}
			return l
		}
	}
	sig, err := signaling.New(signaling.Config{
		Secret:          secret,
		Media:           engine,
		MaxParticipants: opts.MaxParticipants,
		DropTimeout:     drop,
		ICEServers:      iceServers,
		Logger:          log.With("component", "signaling"),
	})
	if err != nil {
		if ts != nil {
			ts.Close()
		}
		engine.Close()
		return nil, err
	}
	hs := httptest.NewUnstartedServer(sig)
	hs.Start()
	return &Server{URL: hs.URL, Secret: secret, Signaling: sig, Media: engine, TURN: ts, http: hs}, nil
}

// startTURN starts a TURN server on loopback, ephemeral ports, that admits
// the media server's UDP port exactly as "sotto serve" does.
func startTURN(engine *media.Engine, transport string, log *slog.Logger) (*turn.Server, error) {
	if transport != "" && transport != "udp" && transport != "tcp" {
		return nil, fmt.Errorf("testserver: TURN transport %q: want udp or tcp", transport)
	}
	peers, err := turn.MediaPeers(engine.UDPAddr(), nil)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	return turn.NewServer(turn.Config{
		Secret:     secret,
		ListenIP:   "127.0.0.1",
		AllowPeers: peers,
		Logger:     log.With("component", "turn"),
	})
}

// offered keeps the STUN URLs of servers and, when transport is set, only
// the TURN URLs with that transport.
func offered(servers []api.ICEServer, transport string) []api.ICEServer {
	if transport == "" {
		return servers
	}
	out := servers[:0]
	for _, s := range servers {
		urls := slices.DeleteFunc(s.URLs, func(u string) bool {
			return !strings.HasPrefix(u, "stun:") && !strings.HasSuffix(u, "?transport="+transport)
		})
		if len(urls) > 0 {
			s.URLs = urls
			out = append(out, s)
		}
	}
	return out
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
	tok, err := token.Mint(s.Secret, token.Claims{Room: room, Identity: identity, Expiry: time.Now().Add(time.Hour)})
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
func (s *Server) Addr() net.Addr { return s.http.Listener.Addr() }

// Close stops the server: participants are told it is shutting down, then
// the HTTP listener and the media sockets close.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Signaling.Shutdown(ctx)
	s.http.CloseClientConnections()
	s.http.Close()
	if s.TURN != nil {
		s.TURN.Close()
	}
	done := make(chan struct{})
	go func() {
		s.Media.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeTimeout):
		// A goroutine of the engine outlived its peers: a leak.
		s.report("testserver: media engine still closing after %v", closeTimeout)
	}
}

// closeTimeout bounds Close, so that a hung engine fails a test instead of
// hanging the test binary.
const closeTimeout = 10 * time.Second

// report fails the test, or logs for a server made with New.
func (s *Server) report(format string, args ...any) {
	if s.tb != nil {
		s.tb.Errorf(format, args...)
		return
	}
	slog.Default().Error(fmt.Sprintf(format, args...))
}
