package udp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// modes runs f with batched system calls (where the system has them) and
// with one datagram per call.
func modes(t *testing.T, f func(t *testing.T, batched bool)) {
	for _, batched := range []bool{true, false} {
		if batched && !mmsgSupported {
			continue
		}
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) { f(t, batched) })
	}
}

func listen(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func messages(n, size int) []Message {
	ms := make([]Message, n)
	for i := range ms {
		ms[i].Buf = make([]byte, size)
	}
	return ms
}

// TestWriteFansOut: one batch reaches several sockets, each its own
// datagrams, in order.
func TestWriteFansOut(t *testing.T) {
	modes(t, func(t *testing.T, batched bool) {
		src := listen(t, "udp4", "127.0.0.1:0")
		w, err := newWriter(src, 4, batched) // smaller than the batch: it is split
		if err != nil {
			t.Fatal(err)
		}
		sinks := []*net.UDPConn{listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")}
		var ms []Message
		for i := range 9 {
			ms = append(ms, Message{Buf: fmt.Appendf(nil, "datagram %d", i), Addr: addrOf(sinks[i%3])})
		}
		if failed, err := w.Write(ms); failed != 0 || err != nil {
			t.Fatalf("Write: %d failed, %v", failed, err)
		}
		buf := make([]byte, 100)
		for s, sink := range sinks {
			sink.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i := s; i < 9; i += 3 {
				n, from, err := sink.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := string(buf[:n]), fmt.Sprintf("datagram %d", i); got != want || from != addrOf(src) {
					t.Errorf("sink %d got %q from %v, want %q from %v", s, got, from, want, addrOf(src))
				}
			}
		}
	})
}

// TestReadBatch: datagrams waiting from several senders come in one read
// (batched) with their senders, in order.
func TestReadBatch(t *testing.T) {
	modes(t, func(t *testing.T, batched bool) {
		dst := listen(t, "udp4", "127.0.0.1:0")
		r, err := newReader(dst, 8, batched)
		if err != nil {
			t.Fatal(err)
		}
		senders := []*net.UDPConn{listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")}
		for i := range 6 {
			if _, err := senders[i%2].WriteToUDPAddrPort(fmt.Appendf(nil, "datagram %d", i), addrOf(dst)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(50 * time.Millisecond) // all six waiting
		ms := messages(8, 100)
		got := 0
		for calls := 1; got < 6; calls++ {
			n, err := r.Read(ms[got:])
			if err != nil {
				t.Fatal(err)
			}
			if batched && (calls > 1 || n != 6) {
				t.Errorf("batched read returned %d datagrams in call %d, want all 6 in one", n, calls)
			}
			got += n
		}
		for i := range 6 {
			if string(ms[i].Buf[:ms[i].N]) != fmt.Sprintf("datagram %d", i) || ms[i].Addr != addrOf(senders[i%2]) {
				t.Errorf("datagram %d: %q from %v", i, ms[i].Buf[:ms[i].N], ms[i].Addr)
			}
		}
	})
}

// TestDualStack: a socket on every interface is IPv6 with IPv4 mapped;
// IPv4 peers are reached and seen as such.
func TestDualStack(t *testing.T) {
	modes(t, func(t *testing.T, batched bool) {
		sock := listen(t, "udp", "0.0.0.0:0")
		port := addrOf(sock).Port()
		r, err := newReader(sock, 4, batched)
		if err != nil {
			t.Fatal(err)
		}
		w, err := newWriter(sock, 4, batched)
		if err != nil {
			t.Fatal(err)
		}
		peer := listen(t, "udp4", "127.0.0.1:0")
		if _, err := peer.WriteToUDPAddrPort([]byte("ping"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)); err != nil {
			t.Fatal(err)
		}
		ms := messages(4, 100)
		if _, err := r.Read(ms); err != nil {
			t.Fatal(err)
		}
		if ms[0].Addr.Addr().Unmap() != addrOf(peer).Addr() || ms[0].Addr.Port() != addrOf(peer).Port() {
			t.Fatalf("read from %v, want %v", ms[0].Addr, addrOf(peer))
		}
		// Answered at the address as read (mapped) and as the peer's own.
		for _, to := range []netip.AddrPort{ms[0].Addr, addrOf(peer)} {
			if failed, err := w.Write([]Message{{Buf: []byte("pong"), Addr: to}}); failed != 0 {
				t.Fatalf("write to %v: %v", to, err)
			}
			peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 10)
			if n, _, err := peer.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "pong" {
				t.Fatalf("peer read %q, %v", buf[:n], err)
			}
		}
	})
}

// TestWriteSkipsUnreachable: a datagram the socket cannot send fails
// alone; the rest of the batch goes.
func TestWriteSkipsUnreachable(t *testing.T) {
	modes(t, func(t *testing.T, batched bool) {
		src := listen(t, "udp4", "127.0.0.1:0")
		w, err := newWriter(src, 8, batched)
		if err != nil {
			t.Fatal(err)
		}
		sink := listen(t, "udp4", "127.0.0.1:0")
		ms := []Message{
			{Buf: []byte("one"), Addr: addrOf(sink)},
			{Buf: []byte("lost"), Addr: netip.MustParseAddrPort("[2001:db8::1]:9")}, // IPv6 from an IPv4 socket
			{Buf: []byte("two"), Addr: addrOf(sink)},
		}
		failed, err := w.Write(ms)
		if failed != 1 || err == nil {
			t.Fatalf("Write: %d failed, %v; want 1 and its error", failed, err)
		}
		buf := make([]byte, 10)
		sink.SetReadDeadline(time.Now().Add(5 * time.Second))
		for _, want := range []string{"one", "two"} {
			if n, _, err := sink.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != want {
				t.Fatalf("read %q, %v; want %q", buf[:n], err, want)
			}
		}
	})
}

func TestClosed(t *testing.T) {
	modes(t, func(t *testing.T, batched bool) {
		sock := listen(t, "udp4", "127.0.0.1:0")
		r, err := newReader(sock, 4, batched)
		if err != nil {
			t.Fatal(err)
		}
		w, err := newWriter(sock, 4, batched)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := r.Read(messages(4, 100))
			done <- err
		}()
		time.Sleep(20 * time.Millisecond)
		sock.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("read on a closed socket: %v", err)
		}
		ms := []Message{{Buf: []byte("x"), Addr: addrOf(sock)}, {Buf: []byte("y"), Addr: addrOf(sock)}}
		if failed, err := w.Write(ms); failed != 2 || !errors.Is(err, net.ErrClosed) {
			t.Errorf("write on a closed socket: %d failed, %v", failed, err)
		}
	})
	if _, err := NewReader(listen(t, "udp4", "127.0.0.1:0"), 0); err == nil {
		t.Error("a batch of 0 accepted")
	}
}

// TestNoAllocations: a round of writing a batch and reading it costs no
// allocation.
func TestNoAllocations(t *testing.T) {
	modes(t, func(t *testing.T, batched bool) {
		a, b := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
		w, err := newWriter(a, 16, batched)
		if err != nil {
			t.Fatal(err)
		}
		r, err := newReader(b, 16, batched)
		if err != nil {
			t.Fatal(err)
		}
		out := messages(4, 200)
		for i := range out {
			out[i].Addr = addrOf(b)
		}
		in := messages(16, 1500)
		if allocs := testing.AllocsPerRun(100, func() {
			if failed, err := w.Write(out); failed != 0 {
				t.Fatal(err)
			}
			for got := 0; got < len(out); {
				n, err := r.Read(in)
				if err != nil {
					t.Fatal(err)
				}
				got += n
			}
		}); allocs != 0 {
			t.Errorf("%v allocations per round", allocs)
		}
	})
}
