package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/turn"
)

// turnSecretLabel separates the TURN secret derived from the server secret
// from the token key itself: TURN credentials are HMACs handed to every
// participant, and a TURN secret shared with another server must not mint
// room tokens.
const turnSecretLabel = "sotto turn rest secret v1"

// DeriveTURNSecret is the TURN REST secret of the embedded server when
// TURNConfig.Secret is nil: an HMAC of the server secret, never the
// server secret itself.
func DeriveTURNSecret(serverSecret []byte) []byte {
	m := hmac.New(sha256.New, serverSecret)
	m.Write([]byte(turnSecretLabel))
	return m.Sum(nil)
}

// turnService is TURN as the configuration asks: the embedded server, an
// external one named by URL, or none.
type turnService struct {
	server     *turn.Server // nil unless embedded
	urls       []string     // external URLs, nil unless configured
	secret     []byte
	ttl        time.Duration
	transports []string
}

// startTURN starts what cfg.TURN asks for: nothing when off, no server but
// credentials for the external URLs when given, else the embedded server
// next to the media relay whose UDP address is mediaUDP.
func startTURN(cfg Config, mediaUDP net.Addr, log *slog.Logger) (*turnService, error) {
	t := cfg.TURN
	if t.Off {
		log.Info("turn: off")
		return &turnService{}, nil
	}
	s := &turnService{secret: t.Secret, ttl: t.CredentialTTL, transports: t.Transports}
	if len(s.secret) == 0 {
		s.secret = DeriveTURNSecret(cfg.Secret)
	}
	if len(t.URLs) > 0 {
		s.urls = t.URLs
		log.Info("turn: clients use external servers", "urls", strings.Join(t.URLs, " "))
		return s, nil
	}
	tc, err := embeddedTURNConfig(cfg, s.secret, mediaUDP, log)
	if err != nil {
		return nil, err
	}
	if s.server, err = turn.NewServer(tc); err != nil {
		return nil, fmt.Errorf("%w (TURN can be turned off)", err)
	}
	return s, nil
}

// embeddedTURNConfig configures the embedded server: listening where media
// does, advertising the first IPv4 public IP, and admitting the media port
// although it sits on this host's own, often loopback or private, address.
func embeddedTURNConfig(cfg Config, secret []byte, mediaUDP net.Addr, log *slog.Logger) (turn.Config, error) {
	t := cfg.TURN
	peers, err := turn.MediaPeers(mediaUDP, cfg.Media.PublicIPs)
	if err != nil {
		return turn.Config{}, err
	}
	tc := turn.Config{
		Secret:                secret,
		ListenIP:              cfg.Media.IP,
		Port:                  t.Port,
		Host:                  t.Host,
		PublicIP:              firstIPv4(cfg.Media.PublicIPs),
		RelayPortMin:          t.RelayPortMin,
		RelayPortMax:          t.RelayPortMax,
		MaxAllocationsPerUser: t.MaxAllocationsPerUser,
		MaxAllocations:        t.MaxAllocations,
		Allow:                 t.Allow,
		AllowPeers:            peers,
		Logger:                log,
	}
	if everyInterface(cfg.Media.IP) {
		// Validate made sure there is a public IP to advertise.
		tc.RelayIP = net.IPv4zero
	}
	if cfg.TLS != nil {
		tc.TLSPort, tc.TLSConfig = t.TLSPort, cfg.TLS
		if tc.Host == "" {
			tc.Host = certificateName(cfg.TLS)
		}
	}
	return tc, nil
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
		return func(identity string) []api.ICEServer {
			return s.offered(s.server.ICEServers(identity, s.ttl))
		}
	case len(s.urls) > 0:
		return func(identity string) []api.ICEServer {
			return s.offered(turn.ICEServersFor(s.urls, s.secret, identity, s.ttl, time.Now()))
		}
	}
	return nil
}

// offered keeps the STUN URLs of servers and, when transports are chosen,
// the TURN URLs with one of them.
func (s *turnService) offered(servers []api.ICEServer) []api.ICEServer {
	if len(s.transports) == 0 {
		return servers
	}
	out := servers[:0]
	for _, is := range servers {
		is.URLs = slices.DeleteFunc(is.URLs, func(u string) bool {
			return !strings.HasPrefix(u, "stun:") && !strings.HasPrefix(u, "stuns:") && !slices.ContainsFunc(s.transports, func(tr string) bool {
				return strings.HasSuffix(u, "?transport="+tr)
			})
		})
		if len(is.URLs) > 0 {
			out = append(out, is)
		}
	}
	return out
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
