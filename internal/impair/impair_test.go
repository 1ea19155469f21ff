package impair

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

const datagrams = 2000

// sink is a plain UDP socket on loopback that records the indices of the
// datagrams it gets.
type sink struct {
	conn net.PacketConn
	mu   sync.Mutex
	got  []uint32
	done chan struct{}
}

func newSink(t *testing.T, conn net.PacketConn) *sink {
	s := &sink{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 64)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if n == 4 {
				s.mu.Lock()
				s.got = append(s.got, binary.BigEndian.Uint32(buf))
				s.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-s.done })
	return s
}

// settle waits until the sink has had nothing new for 100 ms.
func (s *sink) settle() []uint32 {
	last := -1
	for {
		time.Sleep(100 * time.Millisecond)
		s.mu.Lock()
		n := len(s.got)
		s.mu.Unlock()
		if n == last {
			s.mu.Lock()
			defer s.mu.Unlock()
			return slices.Clone(s.got)
		}
		last = n
	}
}

// send writes datagrams numbered 0..datagrams-1 from w to addr, paced so
// that loopback itself loses nothing.
func send(t *testing.T, w net.PacketConn, addr net.Addr) {
	t.Helper()
	var b [4]byte
	for i := range datagrams {
		binary.BigEndian.PutUint32(b[:], uint32(i))
		if _, err := w.WriteTo(b[:], addr); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond)
		}
	}
}

func plainUDP(t *testing.T) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// near checks that got of n is within five standard deviations of the
// fraction p: a failure by chance would take a broken generator.
func near(t *testing.T, what string, got, n uint64, p float64) {
	t.Helper()
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if d := math.Abs(float64(got) - p*float64(n)); d > 5*sd+1 {
		t.Errorf("%s: %d of %d, want about %.0f (%.0f %%)", what, got, n, p*float64(n), 100*p)
	}
}

func TestUplinkLoss(t *testing.T) {
	run := func(seed uint64) []uint32 {
		c, err := Listen(context.Background(), "127.0.0.1:0", Config{LossUp: 0.2, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s := newSink(t, plainUDP(t))
		send(t, c, s.conn.LocalAddr())
		got := s.settle()
		st := c.Stats()
		if st.Sent+st.DroppedUp != datagrams || st.Received+st.DroppedDown != 0 {
			t.Fatalf("stats %+v after writing %d", st, datagrams)
		}
		near(t, "dropped on the way out", st.DroppedUp, datagrams, 0.2)
		if uint64(len(got)) != st.Sent {
			t.Errorf("%d datagrams arrived, %d were sent", len(got), st.Sent)
		}
		return got
	}
	a, b := run(7), run(7)
	if !slices.Equal(a, b) {
		t.Error("the same seed lost different datagrams")
	}
	if c := run(8); slices.Equal(a, c) {
		t.Error("another seed lost the same datagrams")
	}
}

func TestDownlinkLoss(t *testing.T) {
	c, err := Listen(context.Background(), "127.0.0.1:0", Config{LossDown: 0.1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := newSink(t, c)
	send(t, plainUDP(t), c.LocalAddr())
	got := s.settle()
	st := c.Stats()
	if st.Received+st.DroppedDown != datagrams || st.Sent+st.DroppedUp != 0 {
		t.Fatalf("stats %+v after %d arrived", st, datagrams)
	}
	near(t, "dropped on arrival", st.DroppedDown, datagrams, 0.1)
	if uint64(len(got)) != st.Received {
		t.Errorf("%d datagrams read, %d counted received", len(got), st.Received)
	}
	// The AddrPort path drops too: with everything lost, a read only ends
	// at its deadline.
	all, err := Listen(context.Background(), "127.0.0.1:0", Config{LossDown: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	send(t, plainUDP(t), all.LocalAddr())
	all.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := all.ReadFromAddrPort(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read from a socket losing everything: %v, want a timeout", err)
	}
	if st := all.Stats(); st.Received != 0 || st.DroppedDown == 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestClosedWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c, err := Listen(ctx, "127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(make([]byte, 64))
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("read after cancel: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the socket outlived its context")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{LossUp: -0.1}, {LossDown: 1.5}, {LossUp: math.NaN()}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
		if _, err := Listen(context.Background(), "127.0.0.1:0", c); err == nil {
			t.Errorf("Listen with %+v succeeded", c)
		}
	}
	if err := (Config{LossUp: 1, LossDown: 0.05}).Validate(); err != nil {
		t.Error(err)
	}
}
