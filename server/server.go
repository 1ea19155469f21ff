package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sotto-voice/sotto/cluster"
	"github.com/sotto-voice/sotto/internal/connlimit"
	"github.com/sotto-voice/sotto/media"
	"github.com/sotto-voice/sotto/signaling"
	"github.com/sotto-voice/sotto/store"
	"github.com/sotto-voice/sotto/token"
	"github.com/sotto-voice/sotto/turn"
)

// shutdownGrace bounds the graceful part of a shutdown: telling
// participants, flushing their streams and closing peer connections.
const shutdownGrace = 4 * time.Second

// mediaCloseGrace is what Serve gives the media relay after signaling and
// HTTP have stopped.
const mediaCloseGrace = 2 * time.Second

// Server is an assembled server: its sockets are bound, TURN and the media
// relay run, and HTTP is served once Start (or Serve) is called.
type Server struct {
	log   *slog.Logger
	media *media.Engine
	turn  *turnService
	sig   *signaling.Server
	conns *connlimit.Listener
	http  *http.Server
	url   string

	store   store.Store
	cluster *cluster.Cluster // nil unless a cluster node

	secret []byte

	startOnce sync.Once
	served    chan error // the HTTP server's end
}

// New validates cfg, fills in its defaults and builds the server: the HTTP
// listener, the media relay, TURN and signaling. The caller must Shutdown
// the server, started or not.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Secret) == 0 {
		return nil, &ConfigError{Field: "Secret", Err: errors.New("required")}
	}
	fileLimit, limitErr := raiseFileLimit()
	cfg = cfg.withDefaults(fileLimit)
	log := cfg.Logger
	if limitErr != nil {
		log.Warn("cannot raise the open-file limit", "limit", fileLimit, "err", limitErr)
	}

	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return nil, &ConfigError{Field: "HTTP.Addr", Err: err}
	}
	s := &Server{log: log, secret: cfg.Secret, served: make(chan error, 1)}
	// Until New succeeds, each part built is closed again on failure.
	ok := false
	var undo []func()
	defer func() {
		if !ok {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	undo = append(undo, func() { ln.Close() })
	s.conns = connlimit.NewListener(ln, cfg.HTTP.MaxConnsPerIP, cfg.HTTP.MaxConns, log.With("component", "http"))
	if s.store, err = openStore(cfg.Store); err != nil {
		return nil, err
	}
	undo = append(undo, func() { s.store.Close() })
	log.Info("state store", "store", cfg.Store.String())
	s.media, err = media.NewEngine(media.Config{
		ListenIP:  cfg.Media.IP,
		UDPPort:   cfg.Media.UDPPort,
		TCPPort:   cfg.Media.TCPPort,
		PublicIPs: cfg.Media.PublicIPs,
		Logger:    log.With("component", "media"),
		// Silent media is told to signaling, which probes the event
		// stream; media that stays silent with a live stream fails later,
		// leaving the caller time to restart ICE.
		ICEDisconnectedTimeout: cfg.SilenceTimeout * 2 / 5,
		ICEFailedTimeout:       cfg.SilenceTimeout,
	})
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { s.media.Close() })
	if s.turn, err = startTURN(cfg, s.media.UDPAddr(), log.With("component", "turn")); err != nil {
		return nil, err
	}
	undo = append(undo, func() { s.turn.Close() })
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
	}
	s.url = httpURL(scheme, ln.Addr())
	if cfg.Store.RedisURL != "" {
		if s.cluster, err = s.newCluster(cfg, scheme, ln.Addr()); err != nil {
			return nil, err
		}
	}
	s.sig, err = signaling.New(signaling.Config{
		Secret:           cfg.Secret,
		Media:            s.media,
		MaxParticipants:  cfg.MaxParticipants,
		MaxRooms:         cfg.MaxRooms,
		MaxMessageBytes:  cfg.MaxMessageBytes,
		MaxEnvelopeBytes: cfg.MaxEnvelopeBytes,
		DropTimeout:      cfg.DropTimeout,
		ProbeTimeout:     cfg.SilenceTimeout / 5,
		OriginPatterns:   cfg.AllowOrigins,
		InviteTTL:        cfg.InviteTTL,
		MaxBlobBytes:     cfg.MaxBlobBytes,
		RoomBlobBytes:    cfg.RoomBlobBytes,
		BlobTTL:          cfg.BlobTTL,
		KnockTimeout:     cfg.KnockTimeout,
		ICEServers:       s.turn.iceServers(),
		Store:            s.store,
		StoreKind:        storeKind(cfg.Store),
		Cluster:          s.signalingCluster(),
		Logger:           log.With("component", "signaling"),
	})
	if err != nil {
		return nil, err
	}
	if s.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), storeOpenTimeout)
		defer cancel()
		if err := s.cluster.Start(ctx); err != nil {
			return nil, err
		}
	}
	s.http = &http.Server{
		Handler:           s.handler(cfg),
		TLSConfig:         cfg.TLS,
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if fileLimit > 0 && uint64(cfg.HTTP.MaxConns) > fileLimit {
		log.Warn("the open-file limit is below the connection cap: raise it (ulimit -n) or lower the cap",
			"open_file_limit", fileLimit, "max_conns", cfg.HTTP.MaxConns)
	}
	log.Info("http limits", "max_conns", cfg.HTTP.MaxConns, "max_conns_per_ip", cfg.HTTP.MaxConnsPerIP,
		"body_timeout", cfg.HTTP.BodyTimeout, "idle_timeout", cfg.HTTP.IdleTimeout, "open_file_limit", fileLimit)
	ok = true
	return s, nil
}

// Start serves HTTP in the background; Serve and Shutdown stop it. Calls
// after the first do nothing.
func (s *Server) Start() {
	s.startOnce.Do(func() {
		go func() {
			if s.http.TLSConfig != nil {
				s.served <- s.http.ServeTLS(s.conns, "", "")
			} else {
				s.served <- s.http.Serve(s.conns)
			}
		}()
		s.log.Info("serving", "url", s.url, "media_udp", port(s.media.UDPAddr()), "media_tcp", port(s.media.TCPAddr()))
	})
}

// Serve starts the server if needed and serves until ctx ends, then shuts
// down gracefully: participants are told, HTTP stops, TURN and the media
// relay close. A media relay that cannot release its peers in time is left
// behind with a warning, so that the process can exit.
func (s *Server) Serve(ctx context.Context) error {
	s.Start()
	var err error
	select {
	case err = <-s.served:
		err = fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
		s.log.Info("shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace+mediaCloseGrace)
	defer cancel()
	if serr := s.Shutdown(sctx); serr != nil {
		s.log.Warn("media relay did not stop in time; exiting anyway", "err", serr)
	}
	s.log.Info("stopped")
	return err
}

// Shutdown stops the server: participants are told it is shutting down and
// their streams flushed (within ctx, at most shutdownGrace), then HTTP,
// TURN and the media relay close. Problems on the way are logged; the
// error is the media relay still closing when ctx ended.
func (s *Server) Shutdown(ctx context.Context) error {
	gctx, cancel := context.WithTimeout(ctx, shutdownGrace)
	defer cancel()
	s.drain(gctx)
	if err := s.sig.Shutdown(gctx); err != nil {
		s.log.Warn("signaling shutdown", "err", err)
	}
	if err := s.http.Shutdown(gctx); err != nil {
		s.log.Warn("http shutdown", "err", err)
		_ = s.http.Close()
	}
	// Shutdown closes the listener only if it was served.
	_ = s.conns.Close()
	s.closeState(gctx)
	if err := s.turn.Close(); err != nil {
		s.log.Warn("turn shutdown", "err", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.media.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			s.log.Warn("media shutdown", "err", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("media relay still closing: %w", ctx.Err())
	}
}

// URL is the base URL of the HTTP API, such as "http://127.0.0.1:7880";
// an unspecified listen address shows as localhost.
func (s *Server) URL() string { return s.url }

// Addr is the HTTP listener's address.
func (s *Server) Addr() net.Addr { return s.conns.Addr() }

// Media is the media relay.
func (s *Server) Media() *media.Engine { return s.media }

// Signaling is the signaling API.
func (s *Server) Signaling() *signaling.Server { return s.sig }

// TURN is the embedded TURN server; nil when TURN is off or external.
func (s *Server) TURN() *turn.Server { return s.turn.server }

// Token mints a token admitting identity to room for ttl.
func (s *Server) Token(room, identity string, ttl time.Duration) (string, error) {
	return token.Mint(s.secret, token.Claims{Room: room, Identity: identity, Expiry: time.Now().Add(ttl)})
}

// httpURL is the address to open in a browser; an unspecified listen IP
// is shown as localhost.
func httpURL(scheme string, a net.Addr) string {
	host, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return scheme + "://" + a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, p)
}

// port is the port of a, "off" for none.
func port(a net.Addr) string {
	if a == nil {
		return "off"
	}
	if _, p, err := net.SplitHostPort(a.String()); err == nil {
		return p
	}
	return a.String()
}
