package connlimit

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// echo serves l: each accepted connection writes "ok" and is held until
// the client closes it.
func echo(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = c.Write([]byte("ok"))
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

// dial connects from the loopback address from and reports whether the
// server kept the connection (answered "ok") or refused it.
func dial(t *testing.T, addr net.Addr, from string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr.String())
	if errors.Is(err, syscall.ECONNRESET) {
		return nil, false // refused before the dial returned
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2)
	_, err = io.ReadFull(c, buf)
	return c, err == nil
}

func TestCaps(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, 2, 3, slog.New(slog.DiscardHandler))
	defer l.Close()
	go echo(l)

	first, ok := dial(t, l.Addr(), "127.0.0.1")
	if !ok {
		t.Fatal("first connection refused")
	}
	if _, ok := dial(t, l.Addr(), "127.0.0.1"); !ok {
		t.Fatal("second connection refused")
	}
	if _, ok := dial(t, l.Addr(), "127.0.0.1"); ok {
		t.Fatal("third connection from one address kept; the cap is 2")
	}
	// Another source still gets in, until the total cap.
	if _, ok := dial(t, l.Addr(), "127.0.0.2"); !ok {
		t.Fatal("connection from a second address refused")
	}
	if _, ok := dial(t, l.Addr(), "127.0.0.3"); ok {
		t.Fatal("fourth connection kept; the total cap is 3")
	}
	if st := l.Stats(); st.Open != 3 || st.RefusedPerIP != 1 || st.RefusedTotal != 1 {
		t.Fatalf("stats %+v", st)
	}

	// A closed connection gives its slot back.
	first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().Open != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("slot not given back: %+v", l.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := dial(t, l.Addr(), "127.0.0.1"); !ok {
		t.Fatal("connection refused after one closed")
	}
}

func TestSource(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:443":                    "192.0.2.7/32",
		"[::ffff:192.0.2.7]:443":           "192.0.2.7/32",
		"[2001:db8:1:2:3:4:5:6]:443":       "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff:4:5:6%eth0]:1": "2001:db8:1:2::/64",
	} {
		ap, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := source(ap); got != netip.MustParsePrefix(want) {
			t.Errorf("source(%s) = %s, want %s", addr, got, want)
		}
	}
}
