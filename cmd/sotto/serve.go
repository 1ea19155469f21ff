package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/sotto-voice/sotto/media"
	"github.com/sotto-voice/sotto/metrics"
	"github.com/sotto-voice/sotto/signaling"
	"github.com/sotto-voice/sotto/turn"
	"github.com/sotto-voice/sotto/web"
)

// shutdownGrace bounds the graceful part of a shutdown: telling participants,
// flushing their streams and closing peer connections.
const shutdownGrace = 4 * time.Second

// mediaCloseGrace bounds the wait for the media relay after signaling and
// HTTP have stopped.
const mediaCloseGrace = 2 * time.Second

// serveOptions is everything "sotto serve" is configured with.
type serveOptions struct {
	httpAddr  string
	udpPort   int
	tcpPort   int
	mediaIP   string // "" = all interfaces
	publicIPs listFlag
	origins   listFlag // extra browser origins allowed to open event streams
	secret    string   // "" = generate a development secret

	maxParticipants  int
	maxRooms         int
	maxMessageBytes  int
	maxEnvelopeBytes int
	dropTimeout      time.Duration

	logLevel  string
	logFormat string

	metricsToken string // "" = /metrics open to anyone who reaches --http
	pprof        bool   // serve net/http/pprof under /debug/pprof/

	tlsCert, tlsKey string        // PEM files; both set serves HTTPS
	inviteTTL       time.Duration // life of private-call invites

	turn turnOptions
}

func parseServe(args []string, stderr io.Writer) (serveOptions, error) {
	var o serveOptions
	fs := newFlagSet("serve", "serve [flags]", stderr)
	fs.StringVar(&o.httpAddr, "http", "127.0.0.1:7880", "HTTP listen address for signaling (port 0 picks a free port)")
	fs.IntVar(&o.udpPort, "udp-port", 7882, "UDP port carrying all ICE media")
	fs.IntVar(&o.tcpPort, "tcp-port", 7881, "ICE-TCP fallback port (-1 disables)")
	fs.StringVar(&o.mediaIP, "media-ip", "", `IP the media ports bind to; default the --http host when it is an IP, "" for all`)
	fs.Var(&o.publicIPs, "public-ip", "public IP to advertise for media behind 1:1 NAT (repeatable or comma-separated)")
	fs.Var(&o.origins, "allow-origin", "extra browser origin host pattern allowed to open event streams, e.g. app.example.com (repeatable or comma-separated)")
	fs.StringVar(&o.secret, "secret", "", "token signing secret, at least 16 bytes (default: a generated development secret)")
	fs.IntVar(&o.maxParticipants, "max-participants", signaling.DefaultMaxParticipants, "participants per room")
	fs.IntVar(&o.maxRooms, "max-rooms", signaling.DefaultMaxRooms, "rooms at once")
	fs.IntVar(&o.maxMessageBytes, "max-message-bytes", signaling.DefaultMaxMessageBytes, "largest HTTP body or event-stream message")
	fs.IntVar(&o.maxEnvelopeBytes, "max-envelope-bytes", signaling.DefaultMaxEnvelopeBytes, "largest envelope payload (decoded)")
	fs.DurationVar(&o.dropTimeout, "drop-timeout", signaling.DefaultDropTimeout, "drop a participant whose event stream is gone this long")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&o.metricsToken, "metrics-token", "", "bearer token /metrics (and /debug/pprof/) require; empty leaves them open")
	fs.BoolVar(&o.pprof, "pprof", false, "serve Go profiles at /debug/pprof/ (guarded by --metrics-token)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate (chain) file; with --tls-key, serve HTTPS (browsers need it beyond localhost)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key file of --tls-cert")
	fs.DurationVar(&o.inviteTTL, "invite-ttl", signaling.DefaultInviteTTL, "how long a private-call invite link stays valid")
	o.turn.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return o, err
	}
	if !flagGiven(fs, "media-ip") {
		o.mediaIP = defaultMediaIP(o.httpAddr)
	}
	return o, o.check()
}

// flagGiven reports whether name was set on the command line or through
// its environment twin.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	_, inEnv := os.LookupEnv(envName(name))
	return given || inEnv
}

// defaultMediaIP binds media where signaling listens when that is one IP, so
// a loopback-only development server advertises only loopback candidates.
func defaultMediaIP(httpAddr string) string {
	host, _, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return ""
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return ""
	}
	return ip.String()
}

func (o serveOptions) check() error {
	var errs []error
	if o.udpPort < 0 || o.udpPort > 65535 {
		errs = append(errs, fmt.Errorf("--udp-port %d out of range", o.udpPort))
	}
	if o.tcpPort < -1 || o.tcpPort > 65535 {
		errs = append(errs, fmt.Errorf("--tcp-port %d out of range", o.tcpPort))
	}
	if o.mediaIP != "" && net.ParseIP(o.mediaIP) == nil {
		errs = append(errs, fmt.Errorf("--media-ip %q is not an IP address", o.mediaIP))
	}
	for _, ip := range o.publicIPs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, fmt.Errorf("--public-ip %q is not an IP address", ip))
		}
	}
	if o.secret != "" && len(o.secret) < signaling.MinSecretLen {
		errs = append(errs, fmt.Errorf("--secret must be at least %d bytes", signaling.MinSecretLen))
	}
	for name, v := range map[string]int{"max-participants": o.maxParticipants, "max-rooms": o.maxRooms,
		"max-message-bytes": o.maxMessageBytes, "max-envelope-bytes": o.maxEnvelopeBytes} {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive", name))
		}
	}
	if o.dropTimeout <= 0 {
		errs = append(errs, errors.New("--drop-timeout must be positive"))
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if o.inviteTTL <= 0 {
		errs = append(errs, errors.New("--invite-ttl must be positive"))
	}
	errs = append(errs, o.turn.check())
	return errors.Join(errs...)
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}

// runServe implements "sotto serve": it runs until ctx ends, then shuts
// down gracefully.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseServe(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(o.logLevel, o.logFormat, stderr)
	if err != nil {
		return err
	}
	secret := o.secret
	if secret == "" {
		var b [32]byte
		rand.Read(b[:])
		secret = hex.EncodeToString(b[:])
		fmt.Fprintf(stderr, "sotto: WARNING: no --secret given; using a development secret valid until this process exits:\n"+
			"sotto:   %s\n"+
			"sotto: mint tokens with: sotto token --secret %s --room ROOM --identity NAME\n", secret, secret)
	}

	var tlsConfig *tls.Config
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("listen on --http %s: %w", o.httpAddr, err)
	}
	defer ln.Close()
	engine, err := media.NewEngine(media.Config{
		ListenIP:  o.mediaIP,
		UDPPort:   o.udpPort,
		TCPPort:   o.tcpPort,
		PublicIPs: o.publicIPs,
		Logger:    log.With("component", "media"),
	})
	if err != nil {
		return err
	}
	turnSvc, err := startTURN(o, []byte(secret), engine.UDPAddr(), tlsConfig, log.With("component", "turn"))
	if err != nil {
		_ = engine.Close()
		return err
	}
	defer turnSvc.Close()
	sig, err := signaling.New(signaling.Config{
		Secret:           []byte(secret),
		Media:            engine,
		MaxParticipants:  o.maxParticipants,
		MaxRooms:         o.maxRooms,
		MaxMessageBytes:  o.maxMessageBytes,
		MaxEnvelopeBytes: o.maxEnvelopeBytes,
		DropTimeout:      o.dropTimeout,
		OriginPatterns:   o.origins,
		InviteTTL:        o.inviteTTL,
		ICEServers:       turnSvc.iceServers(),
		Logger:           log.With("component", "signaling"),
	})
	if err != nil {
		_ = engine.Close()
		return err
	}
	// The API routes take precedence; everything else is the browser client.
	app := http.NewServeMux()
	app.Handle("/v1/", sig)
	app.Handle("/healthz", sig)
	app.Handle("/", web.Handler())
	httpSrv := &http.Server{
		Handler:           withMetrics(app, engine, sig, turnSvc.stats(), o.metricsToken, o.pprof),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
		go func() { served <- httpSrv.ServeTLS(ln, "", "") }()
	} else {
		go func() { served <- httpSrv.Serve(ln) }()
	}

	fmt.Fprintf(stdout, "sotto: serving on %s (media udp %s, tcp %s)\n", httpURL(scheme, ln.Addr()), port(engine.UDPAddr()), port(engine.TCPAddr()))

	select {
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := sig.Shutdown(sctx); err != nil {
		log.Warn("signaling shutdown", "err", err)
	}
	if err := httpSrv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
		_ = httpSrv.Close()
	}
	if err := turnSvc.Close(); err != nil {
		log.Warn("turn shutdown", "err", err)
	}
	// The process is exiting either way; a media relay that cannot release
	// its peers in time must not keep it alive.
	closed := make(chan error, 1)
	go func() { closed <- engine.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			log.Warn("media shutdown", "err", err)
		}
	case <-time.After(mediaCloseGrace):
		log.Warn("media relay did not stop in time; exiting anyway", "waited", mediaCloseGrace)
	}
	log.Info("stopped")
	return nil
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

func port(a net.Addr) string {
	if a == nil {
		return "off"
	}
	if _, p, err := net.SplitHostPort(a.String()); err == nil {
		return p
	}
	return a.String()
}

// withMetrics serves /metrics (and, with withPprof, /debug/pprof/) next to
// the signaling API h, both behind token when it is set.
func withMetrics(h http.Handler, engine *media.Engine, sig *signaling.Server, turnStats func() turn.Stats, token string, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	reg := metrics.NewRegistry(metrics.Sources{Media: engine.Stats, Signaling: sig.Stats, TURN: turnStats})
	mux.Handle("/metrics", metrics.Handler(reg, token))
	if withPprof {
		guard := metrics.Guard(token)
		mux.Handle("/debug/pprof/", guard(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", guard(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/trace", guard(http.HandlerFunc(pprof.Trace)))
		mux.Handle("/debug/pprof/symbol", guard(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/cmdline", guard(http.HandlerFunc(pprof.Cmdline)))
	}
	return mux
}
