package turn

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tcpWriteTimeout bounds one write to a TURN-over-TCP client. A client that
// cannot take a write for this long is gone or hostile; its connection is
// closed rather than left holding a relay goroutine.
const tcpWriteTimeout = 10 * time.Second

// tcpLimiter caps concurrent TURN-over-TCP/TLS connections (shared by all
// stream listeners of a server) and gives each an idle deadline.
type tcpLimiter struct {
	max     int64
	idle    time.Duration
	log     *slog.Logger
	active  atomic.Int64
	refused atomic.Uint64

	mu     sync.Mutex
	conns  map[*idleConn]struct{}
	closed bool
}

func newTCPLimiter(maxConns int, idle time.Duration, log *slog.Logger) *tcpLimiter {
	return &tcpLimiter{max: int64(maxConns), idle: idle, log: log, conns: make(map[*idleConn]struct{})}
}

// closeAll closes every tracked connection; closing a listener does not
// close the connections it accepted.
func (l *tcpLimiter) closeAll() {
	l.mu.Lock()
	l.closed = true
	conns := make([]*idleConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// limitListener accepts at most its limiter's max concurrent connections;
// one past the cap is accepted and closed at once, so the accept loop never
// waits and the kernel backlog never fills with connections nobody serves.
type limitListener struct {
	net.Listener
	lim *tcpLimiter
}

// Accept implements net.Listener. Temporary failures (such as running out of
// file descriptors) are retried with backoff: pion's accept loop stops for
// good on the first error it sees.
func (l *limitListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.lim.log.Warn("turn: accept failed, retrying", "addr", l.Addr(), "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if l.lim.active.Add(1) > l.lim.max {
			l.lim.active.Add(-1)
			l.lim.refused.Add(1)
			l.lim.log.Info("turn: tcp connection refused", "reason", "tcp_cap", "client", c.RemoteAddr())
			_ = c.Close()
			continue
		}
		ic := &idleConn{Conn: c, lim: l.lim}
		l.lim.mu.Lock()
		closed := l.lim.closed
		if !closed {
			l.lim.conns[ic] = struct{}{}
		}
		l.lim.mu.Unlock()
		if closed {
			_ = ic.Close()
			return nil, net.ErrClosed
		}
		return ic, nil
	}
}

// idleConn closes itself when the client sends nothing for the idle timeout
// (the deadline moves forward on every read) or stalls a write.
type idleConn struct {
	net.Conn
	lim       *tcpLimiter
	closeOnce sync.Once
}

// Read implements net.Conn.
func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.lim.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// Write implements net.Conn. A failed write may have sent part of a STUN
// frame, which would desynchronise the stream, so the connection is closed.
func (c *idleConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(tcpWriteTimeout)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		_ = c.Close()
	}
	return n, err
}

// Close implements net.Conn.
func (c *idleConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		c.lim.active.Add(-1)
		c.lim.mu.Lock()
		delete(c.lim.conns, c)
		c.lim.mu.Unlock()
	})
	return err
}
