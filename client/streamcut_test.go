package client

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// streamCutter is an HTTP client for a call whose event stream a test can
// make die as a failing network does: first silent (what the server writes
// is accepted by the connection and never delivered), then gone. Other
// requests pass untouched.
type streamCutter struct {
	mu    sync.Mutex
	conns []*cutConn
}

// cutConn is one TCP connection of the client.
type cutConn struct {
	net.Conn
	first    sync.Once
	upgraded atomic.Bool // its first response switched it to WebSocket
	silent   atomic.Bool

	mu        sync.Mutex
	swallowed []byte // what the server wrote once silent
}

func (s *streamCutter) client() *http.Client {
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			cc := &cutConn{Conn: c}
			s.mu.Lock()
			s.conns = append(s.conns, cc)
			s.mu.Unlock()
			return cc, nil
		},
	}}
}

func (c *cutConn) Read(b []byte) (int, error) {
	for {
		n, err := c.Conn.Read(b)
		c.first.Do(func() { c.upgraded.Store(bytes.HasPrefix(b[:n], []byte("HTTP/1.1 101 "))) })
		if !c.silent.Load() {
			return n, err
		}
		c.mu.Lock()
		c.swallowed = append(c.swallowed, b[:n]...)
		c.mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
}

// streams returns the event-stream connections opened so far.
func (s *streamCutter) streams() []*cutConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*cutConn
	for _, c := range s.conns {
		if c.upgraded.Load() {
			out = append(out, c)
		}
	}
	return out
}

// silence makes the event streams open now deliver nothing more.
func (s *streamCutter) silence() {
	for _, c := range s.streams() {
		c.silent.Store(true)
	}
}

// swallowed reports whether the silenced streams swallowed data containing
// every one of parts.
func (s *streamCutter) swallowed(parts ...string) bool {
	for _, c := range s.streams() {
		c.mu.Lock()
		all := true
		for _, p := range parts {
			all = all && bytes.Contains(c.swallowed, []byte(p))
		}
		c.mu.Unlock()
		if all {
			return true
		}
	}
	return false
}

// drop closes the silenced streams, as the network finally failing does.
func (s *streamCutter) drop() {
	for _, c := range s.streams() {
		if c.silent.Load() {
			c.Conn.Close()
		}
	}
}
