package client

import (
	"context"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
)

// TestNACKGivesUp: a packet lost before the relay (here: a sequence number
// the publisher skips) can never be repaired, as the relay has no copy.
// The subscriber asks for it maxNACKsPerPacket times and then gives up,
// where pion's generator would ask every 100 ms while the packet stays in
// its window. The relay counts each request it cannot answer.
func TestNACKGivesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), (2 * wait.Timeout))
	defer cancel()
	srv := testserver.Start(t, nil)
	alice := joinPeer(ctx, t, srv, "nack", "alice")
	bob := joinPeer(ctx, t, srv, "nack", "bob")
	alice.talk()
	hears(ctx, t, bob, alice)

	before := srv.Media.Stats().NACKsMissed
	c := alice.call.tconn()
	c.wmu.Lock()
	c.pkt.SequenceNumber++ // the packet that never was
	c.wmu.Unlock()
	// Long enough for twenty requests at pion's 100 ms interval.
	sent := int(alice.sent.Load())
	wait.Until(ctx, t, "alice talks for two more seconds", func() bool { return int(alice.sent.Load()) >= sent+200 })
	time.Sleep(200 * time.Millisecond)
	missed := srv.Media.Stats().NACKsMissed - before
	t.Logf("the relay got %d NACKs it could not answer", missed)
	if missed < 1 || missed > maxNACKsPerPacket {
		t.Fatalf("the relay got %d NACKs for the missing packet, want 1 to %d", missed, maxNACKsPerPacket)
	}
}
