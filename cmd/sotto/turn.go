package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/pion/stun/v3"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/turn"
)

// turnOptions are the TURN flags of "sotto serve". The TURN server listens
// where media does (--media-ip) and advertises the first IPv4 --public-ip.
type turnOptions struct {
	enabled    bool
	port       int
	tlsPort    int      // used only with --tls-cert/--tls-key
	urls       listFlag // external STUN/TURN servers handed out instead of ours
	secret     string   // "" = derived from --secret
	host       string   // name in the ICE URLs; "" = certificate name, public IP or relay IP
	relayPorts string
	maxPerUser int
	maxTotal   int
	allow      listFlag // CIDRs admitted as peers despite the relay policy
	ttl        time.Duration
}

func (t *turnOptions) register(fs *flag.FlagSet) {
	fs.BoolVar(&t.enabled, "turn", true, "run the embedded TURN server (UDP and TCP on --turn-port, TLS on --turn-tls-port with --tls-cert)")
	fs.IntVar(&t.port, "turn-port", turn.DefaultPort, "TURN port for UDP and TCP (0 picks a free port)")
	fs.IntVar(&t.tlsPort, "turn-tls-port", turn.DefaultTLSPort, "TURN-over-TLS port, served only with --tls-cert/--tls-key")
	fs.Var(&t.urls, "turn-url", "external STUN/TURN server for clients instead of the embedded one, e.g. turn:turn.example.com:3478?transport=udp (repeatable or comma-separated; needs --turn-secret)")
	fs.StringVar(&t.secret, "turn-secret", "", "TURN REST secret, at least 16 bytes: an external TURN server's static-auth-secret (default: derived from --secret)")
	fs.StringVar(&t.host, "turn-host", "", "host name clients use for TURN (default: the certificate's name for turns:, else the public IP, else the media IP)")
	fs.StringVar(&t.relayPorts, "turn-relay-ports", fmt.Sprintf("%d-%d", turn.DefaultRelayPortMin, turn.DefaultRelayPortMax), "UDP port range of relayed addresses (open it in the firewall)")
	fs.IntVar(&t.maxPerUser, "turn-max-allocations-per-user", turn.DefaultMaxAllocationsPerUser, "TURN allocations per credential")
	fs.IntVar(&t.maxTotal, "turn-max-allocations", turn.DefaultMaxAllocations, "TURN allocations on the server")
	fs.Var(&t.allow, "turn-allow", "CIDR of peers TURN may relay to although private or loopback, e.g. 10.0.0.0/8 for callers on a private network (repeatable or comma-separated)")
	fs.DurationVar(&t.ttl, "turn-credential-ttl", turn.DefaultCredentialTTL, fmt.Sprintf("lifetime of the TURN credentials in a join response; relayed calls longer than this must rejoin (at most %v)", turn.MaxCredentialTTL))
}

func (t turnOptions) check() error {
	var errs []error
	if t.port < 0 || t.port > 65535 {
		errs = append(errs, fmt.Errorf("--turn-port %d out of range", t.port))
	}
	if t.tlsPort < 0 || t.tlsPort > 65535 {
		errs = append(errs, fmt.Errorf("--turn-tls-port %d out of range", t.tlsPort))
	}
	if _, _, err := parsePortRange(t.relayPorts); err != nil {
		errs = append(errs, fmt.Errorf("--turn-relay-ports: %w", err))
	}
	if _, err := parsePrefixes(t.allow); err != nil {
		errs = append(errs, fmt.Errorf("--turn-allow: %w", err))
	}
	if t.secret != "" && len(t.secret) < turn.MinSecretLen {
		errs = append(errs, fmt.Errorf("--turn-secret must be at least %d bytes", turn.MinSecretLen))
	}
	if t.ttl <= 0 || t.ttl > turn.MaxCredentialTTL {
		errs = append(errs, fmt.Errorf("--turn-credential-ttl %v: want more than 0 and at most %v", t.ttl, turn.MaxCredentialTTL))
	}
	for name, v := range map[string]int{"turn-max-allocations-per-user": t.maxPerUser, "turn-max-allocations": t.maxTotal} {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive", name))
		}
	}
	if len(t.urls) > 0 {
		if !t.enabled {
			errs = append(errs, errors.New("--turn-url hands out an external TURN server: drop --turn=false"))
		}
		relays := false
		for _, u := range t.urls {
			uri, err := stun.ParseURI(u)
			if err != nil {
				errs = append(errs, fmt.Errorf("--turn-url %q: %w", u, err))
				continue
			}
			relays = relays || uri.Scheme == stun.SchemeTypeTURN || uri.Scheme == stun.SchemeTypeTURNS
		}
		// The external server must verify what we mint, so it has to be
		// told the secret: a derived one would be unknown to it.
		if relays && t.secret == "" {
			errs = append(errs, errors.New("--turn-url needs --turn-secret, the external TURN server's static-auth-secret"))
		}
	}
	return errors.Join(errs...)
}

// parsePortRange parses "min-max".
func parsePortRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if ok {
		lo, err = strconv.Atoi(strings.TrimSpace(a))
		if err == nil {
			hi, err = strconv.Atoi(strings.TrimSpace(b))
		}
	}
	if !ok || err != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX within 1-65535", s)
	}
	return lo, hi, nil
}

func parsePrefixes(l []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range l {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// turnSecretLabel separates the TURN secret derived from --secret from the
// token key itself: TURN credentials are HMACs handed to every participant,
// and a TURN secret shared with another server must not mint room tokens.
const turnSecretLabel = "sotto turn rest secret v1"

func deriveTURNSecret(serverSecret []byte) []byte {
	m := hmac.New(sha256.New, serverSecret)
	m.Write([]byte(turnSecretLabel))
	return m.Sum(nil)
}

// turnService is TURN as "sotto serve" runs it: the embedded server, an
// external one named by URL, or none.
type turnService struct {
	server *turn.Server // nil unless embedded
	urls   []string     // external URLs, nil unless --turn-url
	secret []byte
	ttl    time.Duration
}

// startTURN starts what o asks for: nothing with --turn=false, no server but
// credentials for the external URLs with --turn-url, else the embedded
// server next to the media engine whose UDP address is mediaUDP.
func startTURN(o serveOptions, serverSecret []byte, mediaUDP net.Addr, tlsConfig *tls.Config, log *slog.Logger) (*turnService, error) {
	t := o.turn
	if !t.enabled {
		log.Info("turn: off")
		return &turnService{}, nil
	}
	s := &turnService{secret: []byte(t.secret), ttl: t.ttl}
	if t.secret == "" {
		s.secret = deriveTURNSecret(serverSecret)
	}
	if len(t.urls) > 0 {
		s.urls = t.urls
		log.Info("turn: clients use external servers", "urls", strings.Join(t.urls, " "))
		return s, nil
	}
	cfg, err := embeddedTURNConfig(o, s.secret, mediaUDP, tlsConfig, log)
	if err != nil {
		return nil, err
	}
	if s.server, err = turn.NewServer(cfg); err != nil {
		return nil, fmt.Errorf("%w (--turn=false runs without TURN)", err)
	}
	return s, nil
}

// embeddedTURNConfig configures the embedded server: listening where media
// does, advertising the first IPv4 public IP, and admitting the media port
// although it sits on this host's own, often loopback or private, address.
func embeddedTURNConfig(o serveOptions, secret []byte, mediaUDP net.Addr, tlsConfig *tls.Config, log *slog.Logger) (turn.Config, error) {
	t := o.turn
	lo, hi, err := parsePortRange(t.relayPorts)
	if err != nil {
		return turn.Config{}, err
	}
	allow, err := parsePrefixes(t.allow)
	if err != nil {
		return turn.Config{}, err
	}
	peers, err := turn.MediaPeers(mediaUDP, o.publicIPs)
	if err != nil {
		return turn.Config{}, err
	}
	cfg := turn.Config{
		Secret:                secret,
		ListenIP:              o.mediaIP,
		Port:                  t.port,
		Host:                  t.host,
		RelayPortMin:          lo,
		RelayPortMax:          hi,
		MaxAllocationsPerUser: t.maxPerUser,
		MaxAllocations:        t.maxTotal,
		Allow:                 allow,
		AllowPeers:            peers,
		Logger:                log,
	}
	for _, s := range o.publicIPs {
		if ip := net.ParseIP(s).To4(); ip != nil {
			cfg.PublicIP = ip
			break
		}
	}
	if o.mediaIP == "" {
		if cfg.PublicIP == nil {
			return turn.Config{}, errors.New("turn: listening on all interfaces, TURN needs an IPv4 --public-ip to advertise (or --media-ip with one address, or --turn=false)")
		}
		cfg.RelayIP = net.IPv4zero
	}
	if tlsConfig != nil {
		cfg.TLSPort, cfg.TLSConfig = t.tlsPort, tlsConfig
		if cfg.Host == "" {
			cfg.Host = certificateName(tlsConfig)
		}
	}
	return cfg, nil
}

// certificateName is the first DNS name of tc's certificate, which turns:
// URLs must carry for clients to verify the server; "" if it has none.
func certificateName(tc *tls.Config) string {
	if len(tc.Certificates) == 0 || len(tc.Certificates[0].Certificate) == 0 {
		return ""
	}
	leaf := tc.Certificates[0].Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(tc.Certificates[0].Certificate[0]); err != nil {
			return ""
		}
	}
	for _, name := range leaf.DNSNames {
		if !strings.Contains(name, "*") {
			return name
		}
	}
	return ""
}

// iceServers is the signaling hook that hands each participant its STUN and
// TURN servers with fresh credentials; nil when TURN is off.
func (s *turnService) iceServers() func(identity string) []api.ICEServer {
	switch {
	case s.server != nil:
		return func(identity string) []api.ICEServer { return s.server.ICEServers(identity, s.ttl) }
	case len(s.urls) > 0:
		return func(identity string) []api.ICEServer {
			return turn.ICEServersFor(s.urls, s.secret, identity, s.ttl, time.Now())
		}
	}
	return nil
}

// stats is the metrics source of the embedded server; nil without one.
func (s *turnService) stats() func() turn.Stats {
	if s.server == nil {
		return nil
	}
	return s.server.Stats
}

// Close stops the embedded server, if any.
func (s *turnService) Close() error {
	if s.server == nil {
		return nil
	}
	return s.server.Close()
}
