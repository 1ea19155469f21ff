package main

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/client"
	"github.com/sotto-voice/sotto/e2ee"
	"github.com/sotto-voice/sotto/internal/loopback"
	"github.com/sotto-voice/sotto/internal/wait"
)

// The Go SDK callers of the fault and cluster tests.

// loopbackOnly keeps the callers' ICE on 127.0.0.1.
func loopbackOnly(ip net.IP) bool { return ip.IsLoopback() }

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// hearing records when a caller heard each identity.
type hearing struct {
	mu    sync.Mutex
	heard map[string][]time.Time // by identity: arrival times
}

func (h *hearing) add(identity string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.heard == nil {
		h.heard = make(map[string][]time.Time)
	}
	h.heard[identity] = append(h.heard[identity], at)
}

// firstAfter returns the first arrival from identity after t0.
func (h *hearing) firstAfter(identity string, t0 time.Time) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, at := range h.heard[identity] {
		if at.After(t0) {
			return at, true
		}
	}
	return time.Time{}, false
}

// longestGap returns the longest silence from identity between from and to.
func (h *hearing) longestGap(identity string, from, to time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, gap := from, time.Duration(0)
	for _, at := range h.heard[identity] {
		if at.Before(from) || at.After(to) {
			continue
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return max(gap, to.Sub(prev))
}

// caller is a Go SDK caller that talks (a frame every 20 ms) and records
// what it hears and the events of its calls. It keeps its identity key
// across joins, as a device does.
type caller struct {
	t    *testing.T
	name string
	key  *e2ee.Identity
	hearing

	callMu sync.Mutex
	call   *client.Call // the latest
	events []client.Event
}

func newCaller(t *testing.T, name string) *caller {
	t.Helper()
	key, err := e2ee.NewIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &caller{t: t, name: name, key: key}
}

// join joins with tok through base, following a cluster's answers to the
// node that runs the room, and starts talking and listening. The call is
// left when the test ends.
func (c *caller) join(ctx context.Context, base, tok string) error {
	jctx, cancel := context.WithTimeout(ctx, wait.Timeout)
	defer cancel()
	call, err := client.Join(jctx, base, tok, &client.Options{IPFilter: loopbackOnly, Identity: c.key, Logger: quietLog})
	if err != nil {
		return err
	}
	c.callMu.Lock()
	c.call = call
	c.callMu.Unlock()
	listened := make(chan struct{})
	go c.talk(call)
	go func() {
		defer close(listened)
		c.listen(call)
	}()
	c.t.Cleanup(func() {
		_ = call.Leave()
		<-listened
	})
	return nil
}

func (c *caller) talk(call *client.Call) {
	ctx, stop := context.WithCancel(context.Background())
	go func() { <-call.Done(); stop() }()
	frame := []byte{0xfc, 0xff, 0xfe} // an Opus frame of silence
	loopback.EveryFrame(ctx, func() { _ = call.WriteFrame(frame, loopback.FrameDuration) })
}

func (c *caller) listen(call *client.Call) {
	frames, events := call.Frames(), call.Events()
	for frames != nil || events != nil {
		select {
		case f, ok := <-frames:
			if !ok {
				frames = nil
				continue
			}
			c.add(f.From.Identity, f.Received)
		case e, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			c.callMu.Lock()
			c.events = append(c.events, e)
			c.callMu.Unlock()
		}
	}
}

// current is the caller's latest call.
func (c *caller) current() *client.Call {
	c.callMu.Lock()
	defer c.callMu.Unlock()
	return c.call
}

// event returns the first event that match accepts.
func (c *caller) event(match func(client.Event) bool) (client.Event, bool) {
	c.callMu.Lock()
	defer c.callMu.Unlock()
	for _, e := range c.events {
		if match(e) {
			return e, true
		}
	}
	return nil, false
}

// waitHearsAll waits until every caller heard every other after t0, and
// returns the longest wait.
func waitHearsAll(t *testing.T, ctx context.Context, callers []*caller, t0 time.Time) time.Duration {
	t.Helper()
	var worst time.Duration
	for _, l := range callers {
		for _, tk := range callers {
			if l == tk {
				continue
			}
			wait.Until(ctx, t, l.name+" hears "+tk.name, func() bool {
				_, ok := l.firstAfter(tk.name, t0)
				return ok
			})
			at, _ := l.firstAfter(tk.name, t0)
			worst = max(worst, at.Sub(t0))
		}
	}
	return worst
}

// checkNoDecryptFailures checks the callers' latest calls.
func checkNoDecryptFailures(t *testing.T, callers []*caller) {
	t.Helper()
	for _, c := range callers {
		if st := c.current().Stats(); st.DecryptFailures() != 0 {
			t.Errorf("%s: %d frames failed to decrypt: %v", c.name, st.DecryptFailures(), st.Dropped)
		}
	}
}
