package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/sotto-voice/sotto/server"
	"github.com/sotto-voice/sotto/signaling"
)

// serveOptions is the command line of "sotto serve": the server's Config and
// what only the command deals with.
type serveOptions struct {
	cfg             server.Config
	secret          string // "" = the development secret
	tlsCert, tlsKey string // PEM files; both set serves HTTPS
	logLevel        string
	logFormat       string
	turn            turnFlags
}

func parseServe(args []string, stderr io.Writer) (serveOptions, error) {
	var o serveOptions
	c := &o.cfg
	fs := newFlagSet("serve", "serve [flags]", stderr)
	fs.StringVar(&c.HTTP.Addr, "http", "127.0.0.1:7880", "HTTP listen address for signaling (port 0 picks a free port)")
	fs.IntVar(&c.Media.UDPPort, "udp-port", 7882, "UDP port carrying all ICE media")
	fs.IntVar(&c.Media.TCPPort, "tcp-port", 7881, "ICE-TCP fallback port (-1 disables)")
	fs.StringVar(&c.Media.IP, "media-ip", "", `IP the media ports bind to; default the --http host when it is an IP, "" or 0.0.0.0 for all`)
	fs.Var((*listFlag)(&c.Media.PublicIPs), "public-ip", "public IP to advertise for media behind 1:1 NAT (repeatable or comma-separated)")
	fs.Var((*listFlag)(&c.AllowOrigins), "allow-origin", "extra browser origin host pattern allowed to call the API and open event streams, e.g. app.example.com (repeatable or comma-separated)")
	fs.StringVar(&o.secret, "secret", "", "token signing secret, at least 16 bytes, e.g. from openssl rand -hex 32 (default: the development secret, see README)")
	fs.IntVar(&c.MaxParticipants, "max-participants", signaling.DefaultMaxParticipants, "participants per room")
	fs.IntVar(&c.MaxRooms, "max-rooms", signaling.DefaultMaxRooms, "rooms at once")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", signaling.DefaultMaxMessageBytes, "largest HTTP body or event-stream message")
	fs.IntVar(&c.MaxEnvelopeBytes, "max-envelope-bytes", signaling.DefaultMaxEnvelopeBytes, "largest envelope payload (decoded)")
	fs.DurationVar(&c.DropTimeout, "drop-timeout", signaling.DefaultDropTimeout, "drop a participant whose event stream is gone this long")
	fs.DurationVar(&c.SilenceTimeout, "silence-timeout", server.DefaultSilenceTimeout, "drop a caller whose media and event stream are both silent within this (a frozen or vanished caller)")
	fs.DurationVar(&c.HTTP.BodyTimeout, "body-timeout", server.DefaultBodyTimeout, "time a client has to send a request body; slower ones get 408 and are disconnected")
	fs.DurationVar(&c.HTTP.IdleTimeout, "idle-timeout", server.DefaultIdleTimeout, "close a keep-alive HTTP connection idle this long")
	fs.IntVar(&c.HTTP.MaxConns, "max-conns", 0, fmt.Sprintf("HTTP connections at once, event streams included (0: %d or half the open-file limit, whichever is lower)", server.DefaultMaxConns))
	fs.IntVar(&c.HTTP.MaxConnsPerIP, "max-conns-per-ip", server.DefaultMaxConnsPerIP, "HTTP connections from one IPv4 address or IPv6 /64")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.MetricsToken, "metrics-token", "", "bearer token /metrics (and /debug/pprof/) require; empty leaves them open")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go profiles at /debug/pprof/ (guarded by --metrics-token)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate (chain) file; with --tls-key, serve HTTPS (browsers need it beyond localhost)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key file of --tls-cert")
	fs.DurationVar(&c.InviteTTL, "invite-ttl", signaling.DefaultInviteTTL, "how long a private-call invite link stays valid")
	fs.StringVar(&c.Store.DataDir, "data-dir", "", "keep calls and the prekey directory in a file in this directory, across restarts (default: memory, nothing survives)")
	fs.StringVar(&c.Store.RedisURL, "redis", "", "redis://[user:password@]host:6379/0: keep the state in Redis and run as a node of the cluster sharing it")
	fs.StringVar(&c.AdvertiseURL, "advertise-url", "", "with --redis: the base URL clients reach this node at, e.g. https://node1.example.com (default: the --http address, when it is one IP)")
	fs.IntVar(&c.MaxBlobBytes, "max-file-bytes", signaling.DefaultMaxBlobBytes, "largest encrypted file a participant may share in a call")
	fs.IntVar(&c.RoomBlobBytes, "room-file-bytes", signaling.DefaultRoomBlobBytes, "encrypted files one call may store at once, in bytes")
	fs.DurationVar(&c.BlobTTL, "file-ttl", signaling.DefaultBlobTTL, "delete a shared file this long after its upload (or when its call ends)")
	fs.DurationVar(&c.KnockTimeout, "knock-timeout", signaling.DefaultKnockTimeout, "how long a guest asking to join waits for the host's answer")
	o.turn.register(fs, &c.TURN)
	if err := parseFlags(fs, args); err != nil {
		return o, err
	}
	if c.Media.IP == "" && flagGiven(fs, "media-ip") {
		// Given empty: every interface, whatever --http says.
		c.Media.IP = "0.0.0.0"
	}
	if o.secret != "" {
		c.Secret = []byte(o.secret)
	}
	var errs []error
	errs = append(errs, o.turn.apply(&c.TURN))
	// The server takes 0 for its default; given as a flag it is a mistake.
	for _, name := range []string{"max-participants", "max-rooms", "max-message-bytes", "max-envelope-bytes",
		"drop-timeout", "silence-timeout", "invite-ttl", "knock-timeout", "max-file-bytes", "room-file-bytes", "file-ttl", "body-timeout", "idle-timeout", "max-conns-per-ip",
		"turn-max-allocations-per-user", "turn-max-allocations", "turn-credential-ttl"} {
		switch v := fs.Lookup(name).Value.(flag.Getter).Get().(type) {
		case int:
			if v == 0 {
				errs = append(errs, fmt.Errorf("--%s must be positive", name))
			}
		case time.Duration:
			if v == 0 {
				errs = append(errs, fmt.Errorf("--%s must be positive", name))
			}
		}
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	errs = append(errs, flagErrors(c.Validate()))
	return o, errors.Join(errs...)
}

// configFlags names the flag of each Config field, for errors.
var configFlags = map[string]string{
	"Secret":                     "--secret",
	"HTTP.Addr":                  "--http",
	"HTTP.BodyTimeout":           "--body-timeout",
	"HTTP.IdleTimeout":           "--idle-timeout",
	"HTTP.MaxConns":              "--max-conns",
	"HTTP.MaxConnsPerIP":         "--max-conns-per-ip",
	"Media.IP":                   "--media-ip",
	"Media.UDPPort":              "--udp-port",
	"Media.TCPPort":              "--tcp-port",
	"Media.PublicIPs":            "--public-ip",
	"MaxParticipants":            "--max-participants",
	"MaxRooms":                   "--max-rooms",
	"MaxMessageBytes":            "--max-message-bytes",
	"MaxEnvelopeBytes":           "--max-envelope-bytes",
	"DropTimeout":                "--drop-timeout",
	"SilenceTimeout":             "--silence-timeout",
	"InviteTTL":                  "--invite-ttl",
	"Store.DataDir":              "--data-dir",
	"Store.RedisURL":             "--redis",
	"AdvertiseURL":               "--advertise-url",
	"MaxBlobBytes":               "--max-file-bytes",
	"RoomBlobBytes":              "--room-file-bytes",
	"BlobTTL":                    "--file-ttl",
	"KnockTimeout":               "--knock-timeout",
	"TURN.Off":                   "--turn=false",
	"TURN.URLs":                  "--turn-url",
	"TURN.Secret":                "--turn-secret",
	"TURN.CredentialTTL":         "--turn-credential-ttl",
	"TURN.Port":                  "--turn-port",
	"TURN.TLSPort":               "--turn-tls-port",
	"TURN.RelayPortMin":          "--turn-relay-ports",
	"TURN.MaxAllocationsPerUser": "--turn-max-allocations-per-user",
	"TURN.MaxAllocations":        "--turn-max-allocations",
}

// flagErrors renames the server's configuration errors after their flags.
func flagErrors(err error) error {
	if err == nil {
		return nil
	}
	all := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		all = j.Unwrap()
	}
	out := make([]error, 0, len(all))
	for _, e := range all {
		var ce *server.ConfigError
		if errors.As(e, &ce) && configFlags[ce.Field] != "" {
			e = fmt.Errorf("%s: %w", configFlags[ce.Field], ce.Err)
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// flagGiven reports whether name was set on the command line or through
// its environment twin.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	_, inEnv := os.LookupEnv(envName(name))
	return given || inEnv
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
// down gracefully. Once the logger exists, every message is a log line.
func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	o, err := parseServe(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(o.logLevel, o.logFormat, stderr)
	if err != nil {
		return err
	}
	if err := serve(ctx, o, log); err != nil {
		log.Error("sotto serve failed", "err", err)
		return errReported
	}
	return nil
}

func serve(ctx context.Context, o serveOptions, log *slog.Logger) error {
	if o.secret == "" {
		secret, path, err := devSecret()
		if err != nil {
			return err
		}
		o.cfg.Secret = []byte(secret)
		log.Warn("no --secret given: using the development secret, which sotto token and sotto load read too; set --secret (SOTTO_SECRET) in production",
			"file", path)
	}
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		o.cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	o.cfg.Logger = log
	srv, err := server.New(o.cfg)
	if err != nil {
		return flagErrors(err)
	}
	return srv.Serve(ctx)
}
