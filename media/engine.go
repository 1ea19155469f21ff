package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sotto-voice/sotto/media/ice"
	"github.com/sotto-voice/sotto/media/transport"
)

// Errors Join wraps; signaling maps them to api.CodeInvalidSDP,
// api.CodeUnsupportedCodec and api.CodeRetry.
var (
	ErrInvalidSDP       = errors.New("invalid SDP")
	ErrUnsupportedCodec = errors.New("unsupported codec: the offer has no Opus audio")
	// ErrUnavailable is a join that failed for a reason of this host's, not
	// the offer's: the same offer may succeed later.
	ErrUnavailable = errors.New("media relay out of resources")
	// ErrClosed is returned by operations on a closed engine, room or peer.
	ErrClosed = errors.New("media: closed")
	// ErrDuplicateParticipant is returned by Join when the participant ID is
	// already in the room.
	ErrDuplicateParticipant = errors.New("participant already in room")
	// ErrNoOfferPending is returned by SetAnswer when no server offer awaits
	// an answer.
	ErrNoOfferPending = errors.New("no offer pending")
	// ErrOfferCollision is returned by AnswerOffer for a client offer that
	// crossed one of the server's ("glare"): the server's offer goes first.
	ErrOfferCollision = errors.New("offer collides with the server's offer awaiting an answer")
)

// DefaultNACKHistory is the number of packets kept per published track to
// answer NACKs when Config.NACKHistory is 0: about 10 s of 20 ms Opus frames.
const DefaultNACKHistory = 512

// Config configures an Engine.
type Config struct {
	ListenIP    string   // IP the media's UDP socket and ICE-TCP listener bind to; "" = all interfaces
	UDPPort     int      // the one UDP port of all media; 0 = ephemeral
	TCPPort     int      // ICE-TCP fallback port; 0 = ephemeral; -1 = disabled
	PublicIPs   []string // 1:1 NAT: advertise these instead of the local addresses
	NACKHistory int      // packets kept per published track to answer NACKs; 0 = DefaultNACKHistory; at most 32768; costs 256 bytes of memory each
	Logger      *slog.Logger

	// ICE liveness: a participant whose client has sent nothing, not even
	// a consent check, for ICEDisconnectedTimeout is disconnected, and
	// after a further ICEFailedTimeout it has failed (PeerHandler.Failed,
	// the peer is closed). 0 = 5 s and 25 s.
	ICEDisconnectedTimeout time.Duration
	ICEFailedTimeout       time.Duration
}

// Engine owns what every participant of the process shares: the media
// transport (its sockets and DTLS certificate), the relay's candidates and
// the counters. One per process.
type Engine struct {
	cfg        Config
	log        *slog.Logger
	tr         *transport.Transport
	udpAddr    net.Addr
	tcpAddr    net.Addr // nil: no ICE-TCP
	candidates []string // the relay's ICE candidates, as a=candidate values

	mu     sync.Mutex
	rooms  map[*Room]struct{}
	closed bool
	done   chan struct{} // closed by Close: the tick stops

	wgMu     sync.RWMutex
	stopping bool           // set once Close waits for wg: no new goroutines
	wg       sync.WaitGroup // every goroutine the package starts

	counters counters
}

// NewEngine binds the media sockets.
//
// The relay is an ICE-lite agent (RFC 8445 section 2.5): it only has host
// candidates (on one UDP port and one TCP port, optionally replaced by
// PublicIPs), so it never needs to probe paths itself; the client, always a
// full agent, does the checks. This is what ICE-lite is for, servers on
// public addresses, and it saves a connectivity-check state machine per
// participant.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NACKHistory <= 0 {
		cfg.NACKHistory = DefaultNACKHistory
	}
	// Older packets could not be told apart from newer ones with the same
	// 16-bit sequence number.
	cfg.NACKHistory = min(cfg.NACKHistory, 1<<15)
	ip := net.IPv4zero
	if cfg.ListenIP != "" {
		ip = net.ParseIP(cfg.ListenIP)
		if ip == nil {
			return nil, fmt.Errorf("media: listen IP %q is not an IP address", cfg.ListenIP)
		}
	}
	ips, err := candidateIPs(ip, cfg.PublicIPs)
	if err != nil {
		return nil, err
	}
	tr, err := transport.Listen(transport.Config{
		IP:                ip,
		UDPPort:           cfg.UDPPort,
		TCPPort:           cfg.TCPPort,
		Logger:            cfg.Logger,
		DisconnectedAfter: cfg.ICEDisconnectedTimeout,
		FailedAfter:       cfg.ICEFailedTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, tr: tr, udpAddr: tr.UDPAddr(), rooms: make(map[*Room]struct{}), done: make(chan struct{})}
	for _, a := range ips {
		e.candidates = append(e.candidates, ice.HostCandidate(a, tr.UDPAddr().Port, false))
	}
	if t := tr.TCPAddr(); t != nil {
		e.tcpAddr = t
		for _, a := range ips {
			e.candidates = append(e.candidates, ice.HostCandidate(a, t.Port, true))
		}
	}
	e.goTracked(e.tick)
	return e, nil
}

// How often the engine evaluates voice activity and sends RTCP reports.
const (
	roomTick   = 100 * time.Millisecond
	reportTick = 10 // in ticks: reports once a second per participant
)

// tick does every room's periodic work, from one goroutine for all: a
// goroutine and a timer per room woke the process ten times a second per
// room for a few microseconds of work.
func (e *Engine) tick() {
	t := time.NewTicker(roomTick)
	defer t.Stop()
	var rooms []*Room // reused
	for n := 1; ; n++ {
		select {
		case <-e.done:
			return
		case now := <-t.C:
			e.mu.Lock()
			for r := range e.rooms {
				rooms = append(rooms, r)
			}
			e.mu.Unlock()
			for _, r := range rooms {
				r.tick(now, n)
			}
			clear(rooms)
			rooms = rooms[:0]
		}
	}
}

// candidateIPs are the addresses the relay advertises: the public IPs of
// a 1:1 NAT if given, else the listen IP, else every interface's unicast
// addresses but loopback and link-local ones.
func candidateIPs(listen net.IP, public []string) ([]netip.Addr, error) {
	var ips []netip.Addr
	if len(public) > 0 {
		for _, p := range public {
			a, err := netip.ParseAddr(p)
			if err != nil {
				return nil, fmt.Errorf("media: public IP %q is not an IP address", p)
			}
			ips = append(ips, a.Unmap())
		}
		return ips, nil
	}
	if !listen.IsUnspecified() {
		a, _ := netip.AddrFromSlice(listen)
		return []netip.Addr{a.Unmap()}, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("media: interface addresses: %w", err)
	}
	for _, addr := range addrs {
		n, ok := addr.(*net.IPNet)
		if !ok {
			continue
		}
		a, _ := netip.AddrFromSlice(n.IP)
		if a = a.Unmap(); a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() {
			continue
		}
		ips = append(ips, a)
	}
	if len(ips) == 0 {
		return nil, errors.New("media: no interface address to advertise: set a listen IP or public IPs")
	}
	return ips, nil
}

// UDPAddr is the address the media's UDP socket is bound to.
func (e *Engine) UDPAddr() net.Addr { return e.udpAddr }

// TCPAddr is the address the ICE-TCP listener is bound to, nil if disabled.
func (e *Engine) TCPAddr() net.Addr { return e.tcpAddr }

// NewRoom creates a room. onSpeaking, if not nil, is called (from the
// engine's own goroutine, one call at a time, so it must not block) when a
// participant starts or stops speaking.
func (e *Engine) NewRoom(name string, onSpeaking func(participantID string, speaking bool)) *Room {
	r := newRoom(e, name, onSpeaking)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		r.closed = true
		return r
	}
	e.rooms[r] = struct{}{}
	e.counters.rooms.Add(1)
	return r
}

func (e *Engine) forgetRoom(r *Room) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.rooms[r]; ok {
		delete(e.rooms, r)
		e.counters.rooms.Add(-1)
	}
}

// goTracked runs f on a goroutine Engine.Close waits for. It reports false,
// and does not run f, once Close has started waiting.
func (e *Engine) goTracked(f func()) bool {
	e.wgMu.RLock()
	defer e.wgMu.RUnlock()
	if e.stopping {
		return false
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
	return true
}

// Close closes every room, waits for every goroutine of the package and
// releases the sockets. It must not be called from a PeerHandler or
// onSpeaking callback.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	close(e.done)
	rooms := make([]*Room, 0, len(e.rooms))
	for r := range e.rooms {
		rooms = append(rooms, r)
	}
	e.mu.Unlock()

	var errs []error
	for _, r := range rooms {
		errs = append(errs, r.Close())
	}
	e.wgMu.Lock()
	e.stopping = true
	e.wgMu.Unlock()
	e.wg.Wait()
	errs = append(errs, e.tr.Close())
	return errors.Join(errs...)
}
