package turn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pionturn "github.com/pion/turn/v4"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/pionlog"
)

// Defaults for zero Config fields.
const (
	DefaultRealm                 = "sotto"
	DefaultPort                  = 3478
	DefaultTLSPort               = 5349
	DefaultRelayPortMin          = 49152
	DefaultRelayPortMax          = 65535
	DefaultMaxAllocationsPerUser = 16
	DefaultMaxAllocations        = 4096
	DefaultMaxTCPConns           = 1024
	DefaultTCPIdleTimeout        = 2 * time.Minute
	// MinSecretLen is the shortest secret NewServer accepts.
	MinSecretLen = 16
)

// Refusal reasons, as counted in Stats and logged.
const (
	ReasonQuotaUser      = "quota_user"      // allocations per credential reached (486)
	ReasonQuotaTotal     = "quota_total"     // allocations on the server reached (486)
	ReasonDeniedPeer     = "denied_peer"     // permission or channel to a refused peer
	ReasonBadCredentials = "bad_credentials" // malformed, expired, wrong realm or wrong password
)

// Config configures a Server. Zero values take the defaults above.
type Config struct {
	// Secret derives the TURN REST credentials (shared with whoever mints
	// them, and with an external coturn's static-auth-secret if any).
	Secret []byte
	Realm  string

	// ListenIP is the address the TURN listeners bind to; empty means all.
	ListenIP string
	// Port is the TURN port for UDP and TCP (bound to the same number when
	// possible); 0 picks an ephemeral port, for tests.
	Port int
	// TLSConfig enables TURN over TLS on TLSPort (0 = ephemeral).
	TLSPort   int
	TLSConfig *tls.Config

	// RelayIP is the IPv4 address relay sockets bind to and advertise.
	// Defaults to ListenIP when that is a specific IPv4 address. It may be
	// 0.0.0.0 only when PublicIP is set.
	RelayIP net.IP
	// PublicIP, if set, is advertised instead of RelayIP (a server behind
	// a 1:1 NAT).
	PublicIP net.IP
	// Host names this server in ICE server URLs (a DNS name matching the
	// certificate for turns:); defaults to PublicIP, else RelayIP.
	Host string

	// RelayPortMin and RelayPortMax bound relay socket ports, inclusive.
	RelayPortMin, RelayPortMax int

	// MaxAllocationsPerUser caps allocations per credential username;
	// MaxAllocations caps them on the whole server. Past either, an
	// Allocate is refused with 486 (Allocation Quota Reached).
	MaxAllocationsPerUser, MaxAllocations int

	// MaxTCPConns caps concurrent TURN-over-TCP and -TLS connections;
	// TCPIdleTimeout closes one that receives nothing for that long.
	MaxTCPConns    int
	TCPIdleTimeout time.Duration

	// Allow admits peers in these prefixes even if Denied refuses them
	// (tests, private deployments). It opens every port of those hosts.
	Allow []netip.Prefix
	// AllowPeers admits these exact transport addresses even if Denied
	// refuses their IP, e.g. this host's media port on a private address.
	AllowPeers []netip.AddrPort

	Logger *slog.Logger
}

// Stats are the server's counters, for metrics.
type Stats struct {
	AllocationsActive  int    // allocations alive now
	AllocationsCreated uint64 // allocations created since start
	RefusedQuotaUser   uint64 // Allocate refused: per-credential quota
	RefusedQuotaTotal  uint64 // Allocate refused: server quota
	DeniedPeer         uint64 // CreatePermission/ChannelBind to a refused peer
	BadCredentials     uint64 // requests with malformed, expired or wrong credentials
	DroppedPackets     uint64 // relayed packets dropped by the peer policy
	TCPConns           int    // TURN-over-TCP/TLS connections open now
	TCPRefused         uint64 // TCP/TLS connections closed at once: cap reached
}

// Refused returns the refusal counters by reason name (the label values a
// metrics exporter uses).
func (s Stats) Refused() map[string]uint64 {
	return map[string]uint64{
		ReasonQuotaUser:      s.RefusedQuotaUser,
		ReasonQuotaTotal:     s.RefusedQuotaTotal,
		ReasonDeniedPeer:     s.DeniedPeer,
		ReasonBadCredentials: s.BadCredentials,
	}
}

// Server is an embedded TURN server (pion/turn) that authenticates TURN REST
// credentials, enforces allocation quotas and refuses to relay to the
// special-purpose addresses Denied lists.
type Server struct {
	cfg     Config
	log     *slog.Logger
	turn    *pionturn.Server
	udp     net.PacketConn
	tcp     net.Listener
	tls     net.Listener
	tcpLim  *tcpLimiter
	policy  *policy
	quota   *quota
	urls    []string
	created atomic.Uint64
	quotaU  atomic.Uint64
	quotaT  atomic.Uint64
	denied  atomic.Uint64
	badCred atomic.Uint64
	dropped atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// NewServer validates cfg, binds the listeners and starts serving.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("turn config: %w", err)
	}
	s := &Server{
		cfg:   cfg,
		log:   cfg.Logger,
		quota: newQuota(cfg.MaxAllocationsPerUser, cfg.MaxAllocations),
	}
	var selfIPs []netip.Addr
	for _, ip := range []net.IP{cfg.RelayIP, cfg.PublicIP} {
		if a, ok := netip.AddrFromSlice(ip); ok {
			selfIPs = append(selfIPs, a)
		}
	}
	s.policy = newPolicy(cfg.Allow, selfIPs, cfg.AllowPeers)
	s.tcpLim = newTCPLimiter(cfg.MaxTCPConns, cfg.TCPIdleTimeout, s.log)

	if err := s.listen(); err != nil {
		s.closeListeners()
		return nil, err
	}

	advertise := cfg.RelayIP
	if cfg.PublicIP != nil {
		advertise = cfg.PublicIP
	}
	gen := func() pionturn.RelayAddressGenerator {
		return &relayGenerator{
			bindIP: cfg.RelayIP, advertiseIP: advertise,
			minPort: cfg.RelayPortMin, maxPort: cfg.RelayPortMax,
			policy: s.policy, dropped: &s.dropped,
		}
	}
	sc := pionturn.ServerConfig{
		Realm:         cfg.Realm,
		LoggerFactory: pionlog.Factory(s.log),
		AuthHandler:   s.authenticate,
		QuotaHandler:  s.checkQuota,
		EventHandler: pionturn.EventHandler{
			OnAuth:              s.onAuth,
			OnAllocationCreated: s.onAllocationCreated,
			OnAllocationDeleted: s.onAllocationDeleted,
			OnAllocationError:   s.onAllocationError,
		},
		PacketConnConfigs: []pionturn.PacketConnConfig{{
			PacketConn: s.udp, RelayAddressGenerator: gen(), PermissionHandler: s.permit,
		}},
		ListenerConfigs: []pionturn.ListenerConfig{{
			Listener: s.tcp, RelayAddressGenerator: gen(), PermissionHandler: s.permit,
		}},
	}
	if s.tls != nil {
		sc.ListenerConfigs = append(sc.ListenerConfigs, pionturn.ListenerConfig{
			Listener: s.tls, RelayAddressGenerator: gen(), PermissionHandler: s.permit,
		})
	}
	t, err := pionturn.NewServer(sc)
	if err != nil {
		s.closeListeners()
		return nil, fmt.Errorf("start turn server: %w", err)
	}
	s.turn = t
	s.urls = s.iceURLs()
	tlsAddr := "off"
	if s.tls != nil {
		tlsAddr = s.TLSAddr().String()
	}
	s.log.Info("turn: serving", "udp", s.udp.LocalAddr(), "tcp", s.tcp.Addr(), "tls", tlsAddr,
		"relay", advertise, "relay_ports", fmt.Sprintf("%d-%d", cfg.RelayPortMin, cfg.RelayPortMax))
	return s, nil
}

func (c *Config) setDefaults() error {
	if len(c.Secret) < MinSecretLen {
		return fmt.Errorf("secret must be at least %d bytes", MinSecretLen)
	}
	if c.Realm == "" {
		c.Realm = DefaultRealm
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RelayIP == nil {
		if ip := net.ParseIP(c.ListenIP); ip != nil && !ip.IsUnspecified() {
			c.RelayIP = ip
		}
	}
	switch {
	case c.RelayIP == nil:
		return errors.New("relay IP required when listening on all addresses")
	case c.RelayIP.To4() == nil:
		return fmt.Errorf("relay IP %s: pion/turn relays over IPv4 only", c.RelayIP)
	case c.RelayIP.IsUnspecified() && c.PublicIP == nil:
		return errors.New("relay IP 0.0.0.0 needs a public IP to advertise")
	case c.PublicIP != nil && c.PublicIP.To4() == nil:
		return fmt.Errorf("public IP %s: pion/turn relays over IPv4 only", c.PublicIP)
	}
	c.RelayIP = c.RelayIP.To4()
	if c.PublicIP != nil {
		c.PublicIP = c.PublicIP.To4()
	}
	if c.RelayPortMin == 0 && c.RelayPortMax == 0 {
		c.RelayPortMin, c.RelayPortMax = DefaultRelayPortMin, DefaultRelayPortMax
	}
	if c.RelayPortMin < 1 || c.RelayPortMax > 65535 || c.RelayPortMin > c.RelayPortMax {
		return fmt.Errorf("relay port range %d-%d is invalid", c.RelayPortMin, c.RelayPortMax)
	}
	for _, v := range []struct {
		p   *int
		def int
		n   string
	}{
		{&c.MaxAllocationsPerUser, DefaultMaxAllocationsPerUser, "allocations per user"},
		{&c.MaxAllocations, DefaultMaxAllocations, "allocations"},
		{&c.MaxTCPConns, DefaultMaxTCPConns, "TCP connections"},
	} {
		switch {
		case *v.p < 0:
			return fmt.Errorf("max %s %d is negative", v.n, *v.p)
		case *v.p == 0:
			*v.p = v.def
		}
	}
	switch {
	case c.TCPIdleTimeout < 0:
		return fmt.Errorf("TCP idle timeout %v is negative", c.TCPIdleTimeout)
	case c.TCPIdleTimeout == 0:
		c.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	if c.Port < 0 || c.Port > 65535 || c.TLSPort < 0 || c.TLSPort > 65535 {
		return fmt.Errorf("ports %d/%d out of range", c.Port, c.TLSPort)
	}
	return nil
}

// listen binds UDP and TCP on one port number (retrying ephemeral picks until
// both fit) and TLS if configured.
func (s *Server) listen() error {
	host := s.cfg.ListenIP
	var lastErr error
	for range 20 {
		udp, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(s.cfg.Port))) //nolint:noctx
		if err != nil {
			return fmt.Errorf("listen turn udp: %w", err)
		}
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port))) //nolint:noctx
		if err != nil {
			_ = udp.Close()
			lastErr = err
			if s.cfg.Port != 0 {
				break
			}
			continue
		}
		s.udp, s.tcp = udp, &limitListener{Listener: tcp, lim: s.tcpLim}
		lastErr = nil
		break
	}
	if lastErr != nil {
		return fmt.Errorf("listen turn tcp: %w", lastErr)
	}
	if s.cfg.TLSConfig != nil {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(s.cfg.TLSPort))) //nolint:noctx
		if err != nil {
			return fmt.Errorf("listen turn tls: %w", err)
		}
		s.tls = tls.NewListener(&limitListener{Listener: l, lim: s.tcpLim}, s.cfg.TLSConfig)
	}
	return nil
}

func (s *Server) closeListeners() {
	for _, c := range []interface{ Close() error }{s.udp, s.tcp, s.tls} {
		if c != nil {
			_ = c.Close()
		}
	}
	s.tcpLim.closeAll()
}

// Close stops the server, its listeners, its TCP connections and (through
// pion) every allocation.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.turn.Close()
		s.tcpLim.closeAll()
	})
	return s.closeErr
}

// UDPAddr is the address of the TURN-over-UDP listener.
func (s *Server) UDPAddr() *net.UDPAddr { return s.udp.LocalAddr().(*net.UDPAddr) }

// TCPAddr is the address of the TURN-over-TCP listener.
func (s *Server) TCPAddr() *net.TCPAddr { return s.tcp.Addr().(*net.TCPAddr) }

// TLSAddr is the address of the TURN-over-TLS listener, or nil without TLS.
func (s *Server) TLSAddr() *net.TCPAddr {
	if s.tls == nil {
		return nil
	}
	return s.tls.Addr().(*net.TCPAddr)
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		AllocationsActive:  s.turn.AllocationCount(),
		AllocationsCreated: s.created.Load(),
		RefusedQuotaUser:   s.quotaU.Load(),
		RefusedQuotaTotal:  s.quotaT.Load(),
		DeniedPeer:         s.denied.Load(),
		BadCredentials:     s.badCred.Load(),
		DroppedPackets:     s.dropped.Load(),
		TCPConns:           int(s.tcpLim.active.Load()),
		TCPRefused:         s.tcpLim.refused.Load(),
	}
}

// ICEServers returns this server's STUN and TURN URLs, the TURN ones with
// fresh credentials for identity valid for ttl (see Credentials).
func (s *Server) ICEServers(identity string, ttl time.Duration) []api.ICEServer {
	return ICEServersFor(s.urls, s.cfg.Secret, identity, ttl, time.Now())
}

func (s *Server) iceURLs() []string {
	host := s.cfg.Host
	if host == "" {
		if s.cfg.PublicIP != nil {
			host = s.cfg.PublicIP.String()
		} else {
			host = s.cfg.RelayIP.String()
		}
	}
	hp := net.JoinHostPort(host, strconv.Itoa(s.UDPAddr().Port))
	// listen binds UDP and TCP to the same port number.
	urls := []string{"stun:" + hp, "turn:" + hp + "?transport=udp", "turn:" + hp + "?transport=tcp"}
	if tl := s.TLSAddr(); tl != nil {
		urls = append(urls, "turns:"+net.JoinHostPort(host, strconv.Itoa(tl.Port))+"?transport=tcp")
	}
	return urls
}

// The handlers below run on pion's read loops: they take short locks and
// never wait on I/O.

func (s *Server) authenticate(username, realm string, src net.Addr) ([]byte, bool) {
	if realm != s.cfg.Realm {
		s.refuseCredentials(username, src, "wrong realm")
		return nil, false
	}
	if err := checkUsername(username, time.Now()); err != nil {
		s.refuseCredentials(username, src, err.Error())
		return nil, false
	}
	return pionturn.GenerateAuthKey(username, realm, restPassword(s.cfg.Secret, username)), true
}

// refuseCredentials counts a refused credential. It logs at debug level only:
// anyone can send these unauthenticated, and the counter is the signal.
func (s *Server) refuseCredentials(username string, src net.Addr, why string) {
	s.badCred.Add(1)
	s.log.Debug("turn: credentials refused", "reason", ReasonBadCredentials, "detail", why,
		"username", username, "client", src)
}

func (s *Server) onAuth(src, _ net.Addr, _, username, _, method string, verdict bool) {
	if !verdict {
		s.refuseCredentials(username, src, "integrity check failed ("+method+")")
	}
}

func (s *Server) checkQuota(username, _ string, src net.Addr) bool {
	reason, ok := s.quota.reserve(username, src, time.Now())
	if ok {
		return true
	}
	if reason == ReasonQuotaUser {
		s.quotaU.Add(1)
	} else {
		s.quotaT.Add(1)
	}
	s.log.Info("turn: allocation refused", "reason", reason, "username", username, "client", src)
	return false
}

func (s *Server) permit(src net.Addr, peer net.IP) bool {
	ip, _ := netip.AddrFromSlice(peer)
	reason, ok := s.policy.permitIP(ip)
	if !ok {
		s.denied.Add(1)
		s.log.Info("turn: peer refused", "reason", ReasonDeniedPeer, "detail", reason,
			"client", src, "peer", peer)
	}
	return ok
}

func (s *Server) onAllocationCreated(src, dst net.Addr, _, username, _ string, relay net.Addr, _ int) {
	s.quota.created(username, src)
	s.created.Add(1)
	s.log.Info("turn: allocation created", "username", username, "client", src,
		"transport", s.transport(dst), "relay", relay)
}

// transport names the listener a client came through; pion reports every
// allocation as UDP, the relayed protocol.
func (s *Server) transport(local net.Addr) string {
	tcp, ok := local.(*net.TCPAddr)
	switch {
	case !ok:
		return "udp"
	case s.tls != nil && tcp.Port == s.TLSAddr().Port:
		return "tls"
	default:
		return "tcp"
	}
}

func (s *Server) onAllocationDeleted(src, _ net.Addr, _, username, _ string) {
	s.quota.deleted(username)
	s.log.Debug("turn: allocation deleted", "username", username, "client", src)
}

func (s *Server) onAllocationError(src, _ net.Addr, _, message string) {
	s.quota.failed(src)
	s.log.Debug("turn: request failed", "client", src, "err", message)
}
