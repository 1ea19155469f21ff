package connlimit

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Stats are a Listener's counters, for metrics.
type Stats struct {
	Open         int    // connections open now
	RefusedPerIP uint64 // closed at once: their source had PerIP open
	RefusedTotal uint64 // closed at once: Total were open
}

// Listener wraps a net.Listener and closes, on accept, every connection
// past the caps. IPv4 sources are counted per address, IPv6 sources per
// /64 (what one subscriber is usually given).
type Listener struct {
	net.Listener
	perIP, total int
	log          *slog.Logger

	mu   sync.Mutex
	open map[netip.Prefix]int
	n    int

	refusedPerIP, refusedTotal atomic.Uint64
}

// NewListener caps ln at total connections, perIP of them from one source.
func NewListener(ln net.Listener, perIP, total int, log *slog.Logger) *Listener {
	return &Listener{Listener: ln, perIP: perIP, total: total, log: log, open: make(map[netip.Prefix]int)}
}

// Accept returns the next connection within the caps.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := source(c.RemoteAddr())
		if reason := l.admit(src); reason != "" {
			l.log.Debug("connection refused", "remote", c.RemoteAddr(), "reason", reason)
			refuse(c)
			continue
		}
		return &conn{Conn: c, l: l, src: src}, nil
	}
}

// Stats returns the counters.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	open := l.n
	l.mu.Unlock()
	return Stats{Open: open, RefusedPerIP: l.refusedPerIP.Load(), RefusedTotal: l.refusedTotal.Load()}
}

// admit counts a connection from src in, or says why it is refused.
func (l *Listener) admit(src netip.Prefix) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.n >= l.total:
		l.refusedTotal.Add(1)
		return "total"
	case l.open[src] >= l.perIP:
		l.refusedPerIP.Add(1)
		return "per_ip"
	}
	l.n++
	l.open[src]++
	return ""
}

func (l *Listener) release(src netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n--
	if l.open[src]--; l.open[src] <= 0 {
		delete(l.open, src)
	}
}

// source is the counting key of a remote address.
func source(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.WithZone("").Prefix(bits)
	return p
}

// refuse closes c with a reset, so that a flood of refused connections
// leaves no TIME_WAIT state behind on the server.
func refuse(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// conn gives its slot back when closed, once.
type conn struct {
	net.Conn
	l    *Listener
	src  netip.Prefix
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.src) })
	return err
}
