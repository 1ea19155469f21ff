package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sotto-voice/sotto/media/ice"
)

const (
	// tcpQueueLimit bounds what waits to be written to one connection:
	// seconds of a call's audio. A client that does not read is not
	// allowed to hold more.
	tcpQueueLimit = 256 << 10
	// tcpFirstCheck is how long a new connection has to send an ICE check.
	tcpFirstCheck = 10 * time.Second
	// tcpWriteTimeout gives up on a client that stopped reading.
	tcpWriteTimeout = 10 * time.Second
)

var errTCPQueueFull = errors.New("transport: ICE-TCP connection's queue full")

// tcpConn is one passive ICE-TCP connection (RFC 6544): packets framed
// with a 16-bit length (RFC 4571) both ways. Its reader handles packets as
// the UDP loop does, with a Writer of its own; writes queue and a writer
// goroutine sends them, so a slow client stalls nothing else.
type tcpConn struct {
	t       *Transport
	c       net.Conn
	remote  netip.AddrPort
	session atomic.Pointer[Session] // bound by the first authenticated check

	mu     sync.Mutex
	out    []byte // framed packets waiting
	spare  []byte
	closed bool
	wake   chan struct{}
	done   chan struct{}
}

// acceptTCP accepts ICE-TCP connections until the listener closes.
func (t *Transport) acceptTCP() {
	for {
		c, err := t.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, most likely: wait for some to free.
			t.log.Warn("transport: accept ICE-TCP", "err", err)
			select {
			case <-t.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		w, err := t.newWriter(tcpBatch)
		if err != nil {
			t.log.Warn("transport: ICE-TCP connection", "err", err)
			c.Close()
			continue
		}
		tc := &tcpConn{t: t, c: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			tc.remote = a.AddrPort()
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			c.Close()
			return
		}
		t.tcpConns[tc] = struct{}{}
		t.wg.Add(2)
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			tc.read(w)
		}()
		go func() {
			defer t.wg.Done()
			tc.write()
		}()
	}
}

// read handles the connection's packets until it closes.
func (c *tcpConn) read(w *Writer) {
	defer c.close()
	br := bufio.NewReaderSize(c.c, 8<<10)
	buf := make([]byte, 1<<16)
	var size [2]byte
	_ = c.c.SetReadDeadline(time.Now().Add(tcpFirstCheck))
	bound := false
	for {
		if _, err := io.ReadFull(br, size[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(size[:]))
		if _, err := io.ReadFull(br, buf[:n]); err != nil {
			return
		}
		if n > MaxPacket {
			c.t.counters.malformed.Add(1)
			continue
		}
		s := c.session.Load()
		if s == nil && !ice.IsSTUN(buf[:n]) {
			c.t.counters.unknownSource.Add(1)
			continue
		}
		c.t.handle(buf[:n], path{tcp: c}, s, time.Now(), w)
		if !bound && c.session.Load() != nil {
			bound = true
			_ = c.c.SetReadDeadline(time.Time{})
		}
		if br.Buffered() < 2 {
			w.Flush()
		}
	}
}

// bind ties the connection to s; a connection serves one session.
func (c *tcpConn) bind(s *Session) bool {
	return c.session.CompareAndSwap(nil, s) || c.session.Load() == s
}

// send queues one packet, framed; false if the queue is full or the
// connection closed.
func (c *tcpConn) send(pkt []byte) bool {
	c.mu.Lock()
	if c.closed || len(c.out)+2+len(pkt) > tcpQueueLimit {
		c.mu.Unlock()
		return false
	}
	c.out = binary.BigEndian.AppendUint16(c.out, uint16(len(pkt)))
	c.out = append(c.out, pkt...)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// write sends what send queued until the connection closes.
func (c *tcpConn) write() {
	defer c.close()
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		c.mu.Lock()
		out := c.out
		c.out, c.spare = c.spare[:0], nil
		c.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		_ = c.c.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
		if _, err := c.c.Write(out); err != nil {
			return
		}
		c.mu.Lock()
		c.spare = out[:0]
		c.mu.Unlock()
	}
}

// close closes the connection, once, and takes it from its session.
func (c *tcpConn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()
	_ = c.c.Close()
	c.t.mu.Lock()
	delete(c.t.tcpConns, c)
	c.t.mu.Unlock()
	if s := c.session.Load(); s != nil {
		s.lostTCP(c)
	}
}
