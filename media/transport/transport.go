package transport

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"

	"github.com/sotto-voice/sotto/internal/pionlog"
	"github.com/sotto-voice/sotto/media/udp"
)

// MaxPacket is the largest datagram the transport reads or writes: an
// Ethernet MTU. WebRTC keeps its packets under the path MTU.
const MaxPacket = 1500

const (
	readBatch  = 64      // datagrams per read system call
	writeBatch = 64      // datagrams per write system call
	tcpBatch   = 16      // datagrams per write of a TCP connection's reader
	udpBuffer  = 4 << 20 // socket buffers asked for; the kernel caps them
	// maxTick bounds how late a silent client is noticed; a quarter of
	// Config.DisconnectedAfter when that is shorter.
	maxTick = 250 * time.Millisecond
)

// Default liveness timeouts, pion's, for a zero Config field.
const (
	DefaultDisconnectedAfter = 5 * time.Second
	DefaultFailedAfter       = 25 * time.Second
)

// Config configures a Transport.
type Config struct {
	IP      net.IP // address to bind; unspecified = every interface
	UDPPort int    // 0 = ephemeral
	TCPPort int    // 0 = ephemeral, -1 = no ICE-TCP
	Logger  *slog.Logger
	// A session whose client has not been heard for DisconnectedAfter is
	// disconnected, and after FailedAfter more it has failed.
	DisconnectedAfter time.Duration
	FailedAfter       time.Duration
}

// Transport owns the media sockets and the sessions using them.
type Transport struct {
	cfg     Config
	log     *slog.Logger
	loggers logging.LoggerFactory
	udp     *net.UDPConn
	tcp     *net.TCPListener
	cert    tls.Certificate
	fp      string // "sha-256 AB:CD:..."

	mu       sync.RWMutex
	byAddr   map[netip.AddrPort]*Session // authenticated UDP addresses
	byUfrag  map[string]*Session         // local ICE ufrag -> session
	sessions map[*Session]struct{}
	tcpConns map[*tcpConn]struct{}
	closed   bool

	done chan struct{}
	wg   sync.WaitGroup

	counters counters
}

// Stats counts the datagrams the transport dropped, by reason, since it
// started.
type Stats struct {
	UnknownSource uint64 // from an address (or TCP connection) no session authenticated
	Malformed     uint64 // not STUN, DTLS, RTP nor RTCP, or a STUN message that is not a valid check
	Unauthentic   uint64 // a check with wrong credentials, or SRTP/SRTCP that does not decrypt
	Stale         uint64 // media that came before the session's keys and was pushed out by newer packets, or came after it closed
	WriteErrors   uint64 // datagrams the socket refused, or a TCP connection's queue overflowed
}

type counters struct {
	unknownSource, malformed, unauthentic, stale, writeErrors atomic.Uint64
}

// Stats returns the drop counters.
func (t *Transport) Stats() Stats {
	c := &t.counters
	return Stats{
		UnknownSource: c.unknownSource.Load(),
		Malformed:     c.malformed.Load(),
		Unauthentic:   c.unauthentic.Load(),
		Stale:         c.stale.Load(),
		WriteErrors:   c.writeErrors.Load(),
	}
}

// Listen binds the sockets and starts reading them.
func Listen(cfg Config) (*Transport, error) {
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.DisconnectedAfter = cmp.Or(cfg.DisconnectedAfter, DefaultDisconnectedAfter)
	cfg.FailedAfter = cmp.Or(cfg.FailedAfter, DefaultFailedAfter)
	if cfg.IP == nil {
		cfg.IP = net.IPv4zero
	}
	t := &Transport{
		cfg:      cfg,
		log:      cfg.Logger,
		loggers:  pionlog.Factory(cfg.Logger),
		byAddr:   make(map[netip.AddrPort]*Session),
		byUfrag:  make(map[string]*Session),
		sessions: make(map[*Session]struct{}),
		tcpConns: make(map[*tcpConn]struct{}),
		done:     make(chan struct{}),
	}
	var err error
	if t.cert, t.fp, err = newCertificate(); err != nil {
		return nil, err
	}
	t.udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: cfg.IP, Port: cfg.UDPPort})
	if err != nil {
		return nil, fmt.Errorf("transport: listen UDP: %w", err)
	}
	// Every participant's media arrives on this one socket, in bursts; a
	// large buffer rides out the reader waiting for a CPU instead of
	// dropping them.
	if err := t.udp.SetReadBuffer(udpBuffer); err != nil {
		t.log.Debug("transport: set UDP receive buffer", "err", err)
	}
	if err := t.udp.SetWriteBuffer(udpBuffer); err != nil {
		t.log.Debug("transport: set UDP send buffer", "err", err)
	}
	reader, err := udp.NewReader(t.udp, readBatch)
	if err != nil {
		t.udp.Close()
		return nil, err
	}
	w, err := t.newWriter(writeBatch)
	if err != nil {
		t.udp.Close()
		return nil, err
	}
	if cfg.TCPPort >= 0 {
		t.tcp, err = net.ListenTCP("tcp", &net.TCPAddr{IP: cfg.IP, Port: cfg.TCPPort})
		if err != nil {
			t.udp.Close()
			return nil, fmt.Errorf("transport: listen TCP: %w", err)
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.acceptTCP()
		}()
	}
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		t.readUDP(reader, w)
	}()
	go func() {
		defer t.wg.Done()
		t.monitor()
	}()
	return t, nil
}

// UDPAddr is the address of the media socket.
func (t *Transport) UDPAddr() *net.UDPAddr { return t.udp.LocalAddr().(*net.UDPAddr) }

// TCPAddr is the address of the ICE-TCP listener, nil without one.
func (t *Transport) TCPAddr() *net.TCPAddr {
	if t.tcp == nil {
		return nil
	}
	return t.tcp.Addr().(*net.TCPAddr)
}

// Fingerprint is the a=fingerprint value of the transport's DTLS
// certificate: "sha-256 " and the hash in colon-separated hex.
func (t *Transport) Fingerprint() string { return t.fp }

// Close closes every session and the sockets, and waits for the
// transport's goroutines.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	sessions := make([]*Session, 0, len(t.sessions))
	for s := range t.sessions {
		sessions = append(sessions, s)
	}
	conns := make([]*tcpConn, 0, len(t.tcpConns))
	for c := range t.tcpConns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, s := range sessions {
		s.Close()
	}
	close(t.done)
	errs := []error{t.udp.Close()}
	if t.tcp != nil {
		errs = append(errs, t.tcp.Close())
	}
	for _, c := range conns {
		c.close()
	}
	t.wg.Wait()
	return errors.Join(errs...)
}

// monitor reports sessions whose client fell silent, came back, or was
// given up.
func (t *Transport) monitor() {
	tk := time.NewTicker(min(maxTick, t.cfg.DisconnectedAfter/4))
	defer tk.Stop()
	var sessions []*Session
	for {
		select {
		case <-t.done:
			return
		case now := <-tk.C:
			t.mu.RLock()
			for s := range t.sessions {
				sessions = append(sessions, s)
			}
			t.mu.RUnlock()
			for _, s := range sessions {
				s.checkLiveness(now)
			}
			clear(sessions)
			sessions = sessions[:0]
		}
	}
}
