package client

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
)

// clientGoroutines returns the stacks of goroutines running the package's
// own code, not the tests'.
func clientGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "sotto/client.") && !strings.Contains(g, "sotto/client.Test") && !strings.Contains(g, "sotto/client.(*peer)") {
			out = append(out, g)
		}
	}
	return out
}

// Leave returns only once every goroutine of the call has returned, and a
// failed Join leaves none behind.
func TestLeaveReleasesGoroutines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)

	canceled, stop := context.WithCancel(ctx)
	stop()
	if _, err := Join(canceled, srv.URL, srv.Token("room-8", "zed"), &Options{IPFilter: loopback}); !errors.Is(err, context.Canceled) {
		t.Errorf("Join with a canceled context: %v, want context.Canceled", err)
	}

	alice := joinPeer(ctx, t, srv, "room-8", "alice")
	bob := joinPeer(ctx, t, srv, "room-8", "bob")
	talkAndCheck(ctx, t, []*peer{alice, bob}, 10)
	for _, p := range []*peer{alice, bob} {
		if err := p.call.Leave(); err != nil {
			t.Fatalf("%s: leave: %v", p.name, err)
		}
		<-p.readDone
	}
	// Leave has waited for them; the goroutines that closed the last
	// channels may still be returning, so allow them a moment.
	var gs []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if gs = clientGoroutines(); len(gs) == 0 {
			break
		}
	}
	if len(gs) > 0 {
		t.Fatalf("%d goroutines left after Leave:\n%s", len(gs), strings.Join(gs, "\n\n"))
	}
	select {
	case <-alice.call.Done():
	case <-time.After(time.Second):
		t.Fatal("Done not closed after Leave")
	}
}
