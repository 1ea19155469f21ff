package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/pion/stun/v3"

	"github.com/sotto-voice/sotto/cluster"
	"github.com/sotto-voice/sotto/store"
	"github.com/sotto-voice/sotto/token"
	"github.com/sotto-voice/sotto/turn"
)

// Defaults of the HTTP listener, for zero HTTPConfig fields.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout       = 10 * time.Second
	DefaultIdleTimeout       = 30 * time.Second
	// DefaultSilenceTimeout drops a frozen caller within 10 s.
	DefaultSilenceTimeout = 10 * time.Second
	// DefaultMaxConns is the cap on HTTP connections, unless half the
	// process's open-file limit is lower: the other half is left to media,
	// TURN relays and the process itself.
	DefaultMaxConns = 10000
	// DefaultMaxConnsPerIP leaves room for a load test of about 200
	// callers, or as many people behind one NAT, from one address.
	DefaultMaxConnsPerIP = 256
)

// Config is everything a server is configured with. Zero values are
// defaults (New fills them in), except Secret, which is required.
type Config struct {
	// Secret signs room tokens and invites, and derives the embedded TURN
	// server's secret; at least token.MinSecretLen bytes.
	Secret []byte

	HTTP HTTPConfig
	// TLS, if set, serves HTTPS and TURN over TLS with its certificate.
	TLS *tls.Config

	Media MediaConfig
	TURN  TURNConfig

	// Signaling limits; zero values are the signaling package's defaults.
	MaxParticipants  int           // participants per room
	MaxRooms         int           // rooms at once
	MaxMessageBytes  int           // HTTP body or event-stream message
	MaxEnvelopeBytes int           // decoded envelope payload
	DropTimeout      time.Duration // a participant without event stream this long is dropped
	// SilenceTimeout bounds how long a caller whose media and event
	// stream both fell silent (a frozen or vanished process) stays in its
	// room; 0 is DefaultSilenceTimeout. Two fifths of it without a packet
	// make the media silent; the event stream then has a fifth of it to
	// answer a ping. Media silent for one and two fifths of it while the
	// stream answers has failed (ice_failed).
	SilenceTimeout time.Duration
	InviteTTL      time.Duration // life of a private-call invite
	KnockTimeout   time.Duration // how long a guest's knock waits for an answer
	MaxBlobBytes   int           // one encrypted file stored for a call
	RoomBlobBytes  int           // the files one call stores at once
	BlobTTL        time.Duration // a stored file is deleted this long after its upload, or with its call
	// AllowOrigins are extra browser origin host patterns allowed to call
	// the API and open event streams (signaling.Config.OriginPatterns).
	AllowOrigins []string

	// Store chooses where the state that must outlive the process lives:
	// memory (the default: nothing survives), a bbolt file in DataDir
	// (sotto serve --data-dir) or Redis at RedisURL (--redis), which makes
	// the server a node of the cluster sharing that Redis. Store.Now is
	// ignored.
	Store store.Options
	// AdvertiseURL is the base URL clients use to reach this node, in
	// cluster mode (--advertise-url): joins of rooms it runs are sent
	// there. "" is the listener's own URL, when it is bound to one IP
	// address.
	AdvertiseURL string

	// MetricsToken is the bearer token /metrics (and /debug/pprof/)
	// require; empty leaves them open to whoever reaches HTTP.Addr.
	MetricsToken string
	// Pprof serves Go profiles at /debug/pprof/.
	Pprof bool

	// Logger receives every component's logs; nil is slog.Default().
	Logger *slog.Logger
}

// HTTPConfig is the listener of the API, the browser client and /metrics.
type HTTPConfig struct {
	// Addr is the listen address; "" is 127.0.0.1 on a free port.
	Addr string
	// ReadHeaderTimeout bounds the reading of a request's headers (and the
	// TLS handshake); a connection that sends none is closed after it.
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds the reading of a request body, from the end of
	// its headers. Requests without a body, event streams among them, are
	// not concerned; a handler that has read its body to the end runs on
	// without a deadline.
	BodyTimeout time.Duration
	// IdleTimeout closes a keep-alive connection waiting this long for its
	// next request.
	IdleTimeout time.Duration
	// MaxConns caps the connections open at once, event streams included;
	// 0 is DefaultMaxConns or half the open-file limit, whichever is lower.
	MaxConns int
	// MaxConnsPerIP caps those from one IPv4 address or one IPv6 /64.
	MaxConnsPerIP int
}

// MediaConfig is where the media relay listens.
type MediaConfig struct {
	// IP the media ports (and the embedded TURN server) bind to; "" is the
	// host of HTTP.Addr when that is an IP address, so that a loopback
	// server offers only loopback candidates, else every interface, as
	// "0.0.0.0" or "::" are.
	IP string
	// UDPPort is the one UDP port of all ICE media; 0 picks a free port.
	UDPPort int
	// TCPPort is the ICE-TCP fallback port; 0 picks a free port, -1 is none.
	TCPPort int
	// PublicIPs are advertised instead of the local addresses, behind a
	// 1:1 NAT; the first IPv4 one is also the embedded TURN server's.
	PublicIPs []string
}

// TURNConfig chooses what clients get as STUN/TURN servers: the embedded
// TURN server (the default), external servers named by URLs, or none.
type TURNConfig struct {
	// Off runs no TURN server and offers clients none.
	Off bool
	// URLs, if set, are external STUN/TURN servers offered instead of the
	// embedded one; turn: and turns: URLs need Secret.
	URLs []string
	// Secret mints the TURN REST credentials: an external server's
	// static-auth-secret. Nil derives one from Config.Secret, which only
	// the embedded server then knows.
	Secret []byte
	// CredentialTTL is the life of the credentials in a join response;
	// 0 is turn.DefaultCredentialTTL, at most turn.MaxCredentialTTL.
	CredentialTTL time.Duration
	// Transports, if set, offers only the TURN URLs with these transports
	// ("udp", "tcp"); STUN URLs are always offered.
	Transports []string

	// The embedded server listens on Media.IP. Ports 0 pick free ports.
	Port    int // UDP and TCP
	TLSPort int // TURN over TLS, served only with Config.TLS
	// Host names the server in ICE URLs; "" is the certificate's name for
	// turns:, else the public IP, else the relay IP.
	Host string
	// RelayPortMin and RelayPortMax bound the relayed addresses' ports;
	// both 0 are the turn package's defaults.
	RelayPortMin, RelayPortMax int
	// Allocation caps; 0 are the turn package's defaults.
	MaxAllocationsPerUser, MaxAllocations int
	// Allow admits peers in these prefixes although the relay policy
	// refuses them (private deployments).
	Allow []netip.Prefix
}

// embedded reports whether c runs the embedded TURN server.
func (c TURNConfig) embedded() bool { return !c.Off && len(c.URLs) == 0 }

// A ConfigError is one invalid value of a Config.
type ConfigError struct {
	Field string // the Config field, such as "TURN.Port"
	Err   error
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *ConfigError) Unwrap() error { return e.Err }

// Validate reports every invalid value of c, each as a *ConfigError, joined.
// Zero values are valid; New also requires a Secret.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Err: fmt.Errorf(format, args...)})
	}
	if len(c.Secret) > 0 && len(c.Secret) < token.MinSecretLen {
		bad("Secret", "must be at least %d bytes", token.MinSecretLen)
	}
	if c.HTTP.Addr != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
			bad("HTTP.Addr", "%v", err)
		}
	}
	nonNegative := map[string]int64{
		"HTTP.ReadHeaderTimeout": int64(c.HTTP.ReadHeaderTimeout), "HTTP.BodyTimeout": int64(c.HTTP.BodyTimeout),
		"HTTP.IdleTimeout": int64(c.HTTP.IdleTimeout), "HTTP.MaxConns": int64(c.HTTP.MaxConns),
		"HTTP.MaxConnsPerIP": int64(c.HTTP.MaxConnsPerIP),
		"MaxParticipants":    int64(c.MaxParticipants), "MaxRooms": int64(c.MaxRooms),
		"MaxMessageBytes": int64(c.MaxMessageBytes), "MaxEnvelopeBytes": int64(c.MaxEnvelopeBytes),
		"DropTimeout": int64(c.DropTimeout), "SilenceTimeout": int64(c.SilenceTimeout), "InviteTTL": int64(c.InviteTTL),
		"KnockTimeout": int64(c.KnockTimeout),
		"MaxBlobBytes": int64(c.MaxBlobBytes), "RoomBlobBytes": int64(c.RoomBlobBytes), "BlobTTL": int64(c.BlobTTL),
		"TURN.MaxAllocationsPerUser": int64(c.TURN.MaxAllocationsPerUser), "TURN.MaxAllocations": int64(c.TURN.MaxAllocations),
	}
	for _, field := range slices.Sorted(maps.Keys(nonNegative)) {
		if nonNegative[field] < 0 {
			bad(field, "must not be negative")
		}
	}
	if c.Media.IP != "" && net.ParseIP(c.Media.IP) == nil {
		bad("Media.IP", "%q is not an IP address", c.Media.IP)
	}
	checkPort(bad, "Media.UDPPort", c.Media.UDPPort, 0)
	checkPort(bad, "Media.TCPPort", c.Media.TCPPort, -1)
	for _, ip := range c.Media.PublicIPs {
		if net.ParseIP(ip) == nil {
			bad("Media.PublicIPs", "%q is not an IP address", ip)
		}
	}
	errs = append(errs, c.validateTURN()...)
	if c.Store.DataDir != "" && c.Store.RedisURL != "" {
		bad("Store.DataDir", "a data dir and Redis exclude each other; choose one")
	}
	if c.AdvertiseURL != "" {
		if c.Store.RedisURL == "" {
			bad("AdvertiseURL", "only a cluster node (with Redis) advertises a URL")
		} else if _, err := cluster.CheckURL(c.AdvertiseURL); err != nil {
			bad("AdvertiseURL", "%v", err)
		}
	}
	return errors.Join(errs...)
}

func (c *Config) validateTURN() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Err: fmt.Errorf(format, args...)})
	}
	t := c.TURN
	checkPort(bad, "TURN.Port", t.Port, 0)
	checkPort(bad, "TURN.TLSPort", t.TLSPort, 0)
	if (t.RelayPortMin != 0 || t.RelayPortMax != 0) && (t.RelayPortMin < 1 || t.RelayPortMax > 65535 || t.RelayPortMin > t.RelayPortMax) {
		bad("TURN.RelayPortMin", "range %d-%d: want MIN-MAX within 1-65535", t.RelayPortMin, t.RelayPortMax)
	}
	if len(t.Secret) > 0 && len(t.Secret) < turn.MinSecretLen {
		bad("TURN.Secret", "must be at least %d bytes", turn.MinSecretLen)
	}
	if t.CredentialTTL < 0 || t.CredentialTTL > turn.MaxCredentialTTL {
		bad("TURN.CredentialTTL", "%v: want at most %v", t.CredentialTTL, turn.MaxCredentialTTL)
	}
	for _, tr := range t.Transports {
		if tr != "udp" && tr != "tcp" {
			bad("TURN.Transports", "%q: want udp or tcp", tr)
		}
	}
	if len(t.URLs) > 0 {
		if t.Off {
			bad("TURN.Off", "external TURN URLs are offered only with TURN on")
		}
		relays := false
		for _, u := range t.URLs {
			uri, err := stun.ParseURI(u)
			if err != nil {
				bad("TURN.URLs", "%q: %v", u, err)
				continue
			}
			relays = relays || uri.Scheme == stun.SchemeTypeTURN || uri.Scheme == stun.SchemeTypeTURNS
		}
		// The external server must verify what we mint, so it has to be
		// told the secret: a derived one would be unknown to it.
		if relays && len(t.Secret) == 0 {
			bad("TURN.Secret", "required with external TURN URLs: the TURN server's static-auth-secret")
		}
	}
	if t.embedded() && everyInterface(c.mediaIP()) && firstIPv4(c.Media.PublicIPs) == nil {
		bad("Media.PublicIPs", "TURN on every interface needs an IPv4 public IP to advertise (or one media IP, or TURN off)")
	}
	return errs
}

func checkPort(bad func(field, format string, args ...any), field string, port, lowest int) {
	if port < lowest || port > 65535 {
		bad(field, "%d out of range", port)
	}
}

func firstIPv4(ips []string) net.IP {
	for _, s := range ips {
		if ip := net.ParseIP(s).To4(); ip != nil {
			return ip
		}
	}
	return nil
}

// mediaIP is the IP the media ports bind to, "" for every interface.
func (c *Config) mediaIP() string {
	if c.Media.IP != "" {
		return c.Media.IP
	}
	addr := c.HTTP.Addr
	if addr == "" {
		addr = defaultHTTPAddr
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return ""
	}
	return ip.String()
}

// everyInterface reports whether ip, a media IP, means every interface.
func everyInterface(ip string) bool {
	return ip == "" || net.ParseIP(ip).IsUnspecified()
}

// defaultHTTPAddr is where a Config without HTTP.Addr listens.
const defaultHTTPAddr = "127.0.0.1:0"

// withDefaults returns c with its zero values filled in; fileLimit is the
// process's open-file limit, 0 if unknown.
func (c Config) withDefaults(fileLimit uint64) Config {
	c.Media.IP = c.mediaIP()
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = defaultHTTPAddr
	}
	setDefault(&c.HTTP.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&c.HTTP.BodyTimeout, DefaultBodyTimeout)
	setDefault(&c.HTTP.IdleTimeout, DefaultIdleTimeout)
	maxConns := DefaultMaxConns
	if fileLimit > 0 && fileLimit/2 < DefaultMaxConns {
		maxConns = int(fileLimit / 2)
	}
	setDefault(&c.HTTP.MaxConns, maxConns)
	setDefault(&c.HTTP.MaxConnsPerIP, DefaultMaxConnsPerIP)
	setDefault(&c.SilenceTimeout, DefaultSilenceTimeout)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}
