package client

import (
	"context"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
)

// An application that stops reading frames loses frames, counted, and
// nothing else: the connection is not blocked, and once it reads again
// new frames arrive.
func TestSlowReaderDropsAndCounts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	alice, err := Join(ctx, srv.URL, srv.Token("room-10", "alice"), &Options{IPFilter: loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Leave()
	go func() {
		for range alice.Events() {
		}
	}()
	bob := joinPeer(ctx, t, srv, "room-10", "bob")

	// Frames flow once bob's key has reached alice.
	for i := 0; alice.Stats().FramesReceived == 0; i++ {
		if err := bob.call.WriteFrame(payload("bob", i), 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("no frame reached alice")
		case <-time.After(10 * time.Millisecond):
		}
	}
	// Alice reads nothing while bob sends more than her buffer holds.
	for i := 0; alice.Stats().FramesDropped == 0; i++ {
		if err := bob.call.WriteFrame(payload("bob", 1000+i), 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			select {
			case <-ctx.Done():
				t.Fatalf("no frame dropped; stats %+v", alice.Stats())
			case <-time.After(time.Millisecond):
			}
		}
	}
	// Meanwhile the event stream works: envelopes still arrive.
	if err := bob.call.SendEnvelope(ctx, alice.ID(), []byte("still there?")); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-alice.Envelopes():
		if string(e.Data) != "still there?" {
			t.Fatalf("envelope %q", e.Data)
		}
	case <-ctx.Done():
		t.Fatal("envelope not delivered while frames back up")
	}
	// Alice catches up, and a new frame reaches her.
	for len(alice.Frames()) > 0 {
		<-alice.Frames()
	}
	const marker = 1 << 20
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			if bob.call.WriteFrame(payload("bob", marker+i), 20*time.Millisecond) != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	for {
		select {
		case f := <-alice.Frames():
			if _, i, ok := frameIndex(f.Data); ok && i >= marker {
				s := alice.Stats()
				t.Logf("stats: %d received, %d dropped", s.FramesReceived, s.FramesDropped)
				return
			}
		case <-ctx.Done():
			t.Fatal("no new frame after catching up")
		}
	}
}
