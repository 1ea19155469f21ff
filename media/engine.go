package media

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/sotto-voice/sotto/internal/pionlog"
)

// Errors Join wraps; signaling maps them to api.CodeInvalidSDP,
// api.CodeUnsupportedCodec and api.CodeRetry.
var (
	ErrInvalidSDP       = errors.New("invalid SDP")
	ErrUnsupportedCodec = errors.New("unsupported codec: the offer has no Opus audio")
	// ErrUnavailable is a join that failed for a reason of this host's, not
	// the offer's (out of file descriptors or memory): the same offer may
	// succeed later.
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

// udpReadBuffer is the receive buffer asked for on the media socket.
const udpReadBuffer = 4 << 20

// Config configures an Engine.
type Config struct {
	ListenIP    string   // IP the UDP mux and ICE-TCP listener bind to; "" = all interfaces
	UDPPort     int      // single UDP port for all ICE media (pion UDP mux); 0 = ephemeral
	TCPPort     int      // ICE-TCP fallback port (pion TCP mux); 0 = ephemeral; -1 = disabled
	PublicIPs   []string // 1:1 NAT: advertise these instead of local host candidates (pion ICE address rewrite, replace)
	NACKHistory int      // packets kept per published track to answer NACKs; 0 = DefaultNACKHistory; at most 32768; costs 1200 bytes each
	Logger      *slog.Logger

	// ICE liveness: a participant whose client has sent nothing for
	// ICEDisconnectedTimeout is disconnected, and after a further
	// ICEFailedTimeout it has failed (PeerHandler.Failed, the peer is
	// closed). 0 = pion's defaults, 5 s and 25 s.
	ICEDisconnectedTimeout time.Duration
	ICEFailedTimeout       time.Duration
}

// Engine owns what every PeerConnection of the process shares: the pion API
// (MediaEngine with Opus only, SettingEngine with the ICE muxes) and the
// counters. One per process.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	api     *webrtc.API
	udpConn net.PacketConn
	udpMux  ice.UDPMux
	tcpLn   net.Listener
	tcpMux  ice.TCPMux

	mu     sync.Mutex
	rooms  map[*Room]struct{}
	closed bool

	wgMu     sync.RWMutex
	stopping bool           // set once Close waits for wg: no new goroutines
	wg       sync.WaitGroup // every goroutine the package starts

	counters counters
}

// NewEngine binds the ICE sockets and builds the pion API.
//
// The server runs ICE lite: it only has host candidates (on one UDP port and
// one TCP port, optionally rewritten to PublicIPs), so it never needs to probe
// paths itself; the client, always a full agent, does the checks. This is what
// RFC 8445 section 2.5 intends for servers on public addresses and it saves a
// connectivity-check state machine per participant.
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
	e := &Engine{cfg: cfg, log: cfg.Logger, rooms: make(map[*Room]struct{})}
	loggers := pionlog.Factory(cfg.Logger)

	ip := net.IPv4zero
	if cfg.ListenIP != "" {
		ip = net.ParseIP(cfg.ListenIP)
		if ip == nil {
			return nil, fmt.Errorf("media: listen IP %q is not an IP address", cfg.ListenIP)
		}
	}

	udpConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: cfg.UDPPort})
	if err != nil {
		return nil, fmt.Errorf("media: listen UDP: %w", err)
	}
	// Every participant's media arrives on this one socket. The kernel's
	// default receive buffer (about 200 KiB) overflows whenever the mux's
	// reader waits for a CPU on a busy machine; a larger one rides out the
	// wait instead of dropping packets. The kernel caps it at rmem_max.
	if err := udpConn.SetReadBuffer(udpReadBuffer); err != nil {
		e.log.Debug("media: set UDP receive buffer", "err", err)
	}
	e.udpConn = udpConn
	e.udpMux = webrtc.NewICEUDPMux(loggers.NewLogger("ice-udp-mux"), udpConn)

	se := webrtc.SettingEngine{LoggerFactory: loggers}
	se.SetLite(true)
	se.SetICEUDPMux(e.udpMux)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.DisableActiveTCP(true)
	if cfg.ICEDisconnectedTimeout > 0 || cfg.ICEFailedTimeout > 0 {
		disconnected := cmp.Or(cfg.ICEDisconnectedTimeout, 5*time.Second)
		failed := cmp.Or(cfg.ICEFailedTimeout, 25*time.Second)
		// The keepalive interval only matters to full agents; a lite agent
		// sends none.
		se.SetICETimeouts(disconnected, failed, 2*time.Second)
	}
	if ip.IsLoopback() {
		se.SetIncludeLoopbackCandidate(true)
	}
	if len(cfg.PublicIPs) > 0 {
		for _, pub := range cfg.PublicIPs {
			if net.ParseIP(pub) == nil {
				_ = e.udpMux.Close()
				return nil, fmt.Errorf("media: public IP %q is not an IP address", pub)
			}
		}
		// 1:1 NAT: the public addresses replace the host candidates.
		err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        cfg.PublicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		})
		if err != nil {
			_ = e.udpMux.Close()
			return nil, fmt.Errorf("media: public IPs: %w", err)
		}
	}
	// A specific listen IP gathers candidates of its own family only; the
	// wildcard gets a dual-stack socket and both.
	v4, v6 := true, true
	if !ip.IsUnspecified() {
		v4, v6 = ip.To4() != nil, ip.To4() == nil
	}
	var networks []webrtc.NetworkType
	if v4 {
		networks = append(networks, webrtc.NetworkTypeUDP4)
	}
	if v6 {
		networks = append(networks, webrtc.NetworkTypeUDP6)
	}
	if cfg.TCPPort >= 0 {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: cfg.TCPPort})
		if err != nil {
			_ = e.udpMux.Close()
			return nil, fmt.Errorf("media: listen TCP: %w", err)
		}
		e.tcpLn = ln
		// 8 packets buffered per connection before ICE binds it to an agent.
		e.tcpMux = webrtc.NewICETCPMux(loggers.NewLogger("ice-tcp-mux"), ln, 8)
		se.SetICETCPMux(e.tcpMux)
		if v4 {
			networks = append(networks, webrtc.NetworkTypeTCP4)
		}
		if v6 {
			networks = append(networks, webrtc.NetworkTypeTCP6)
		}
	}
	se.SetNetworkTypes(networks)

	me, err := newMediaEngine()
	if err != nil {
		e.closeSockets()
		return nil, err
	}
	ir := &interceptor.Registry{}
	// Sender reports toward subscribers. Receiver reports toward publishers
	// are built by the forwarding loop itself (see reception), because pion's
	// ReceiverInterceptor allocates per packet.
	if err := registerSenderReports(ir); err != nil {
		e.closeSockets()
		return nil, err
	}
	e.api = webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(ir))
	return e, nil
}

// newMediaEngine registers Opus only, with NACK feedback (pion registers NACK
// for video only by default) and the RFC 6464 audio-level extension. RED is
// deliberately absent.
func newMediaEngine() (*webrtc.MediaEngine, error) {
	me := &webrtc.MediaEngine{}
	err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: opusCapability,
		PayloadType:        111,
	}, webrtc.RTPCodecTypeAudio)
	if err != nil {
		return nil, fmt.Errorf("media: register Opus: %w", err)
	}
	err = me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio)
	if err != nil {
		return nil, fmt.Errorf("media: register audio level extension: %w", err)
	}
	return me, nil
}

var opusCapability = webrtc.RTPCodecCapability{
	MimeType:     webrtc.MimeTypeOpus,
	ClockRate:    48000,
	Channels:     2,
	SDPFmtpLine:  opusFormat,
	RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}},
}

// UDPAddr is the address the UDP mux is bound to.
func (e *Engine) UDPAddr() net.Addr { return e.udpConn.LocalAddr() }

// TCPAddr is the address the ICE-TCP listener is bound to, nil if disabled.
func (e *Engine) TCPAddr() net.Addr {
	if e.tcpLn == nil {
		return nil
	}
	return e.tcpLn.Addr()
}

// NewRoom creates a room. onSpeaking, if not nil, is called (from the room's
// own goroutine, never concurrently for one room) when a participant starts
// or stops speaking.
func (e *Engine) NewRoom(name string, onSpeaking func(participantID string, speaking bool)) *Room {
	r := newRoom(e, name, onSpeaking)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		r.markClosed()
		return r
	}
	e.rooms[r] = struct{}{}
	e.counters.rooms.Add(1)
	r.start()
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
	errs = append(errs, e.closeSockets())
	return errors.Join(errs...)
}

func (e *Engine) closeSockets() error {
	var errs []error
	if e.udpMux != nil {
		errs = append(errs, e.udpMux.Close())
	}
	if e.tcpMux != nil {
		errs = append(errs, e.tcpMux.Close())
	}
	return errors.Join(errs...)
}
