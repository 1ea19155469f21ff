package client_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/sotto-voice/sotto/client"
	"github.com/sotto-voice/sotto/internal/testserver"
)

// Two callers in a room: bob talks, alice hears him.
func ExampleJoin() {
	// A real server on loopback; in an application, serverURL is the
	// server's address and tokens come from the application's backend.
	srv, err := testserver.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := &client.Options{IPFilter: func(ip net.IP) bool { return ip.IsLoopback() }}

	alice, err := client.Join(ctx, srv.URL, srv.Token("standup", "alice"), opts)
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Leave()
	bob, err := client.Join(ctx, srv.URL, srv.Token("standup", "bob"), opts)
	if err != nil {
		log.Fatal(err)
	}

	// Bob sends a 20 ms Opus frame every 20 ms until he leaves.
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if err := bob.WriteFrame([]byte("opus frame"), 20*time.Millisecond); err != nil {
				return // client.ErrClosed once bob has left
			}
		}
	}()

	if e, ok := (<-alice.Events()).(client.ParticipantJoined); ok {
		fmt.Println(e.Participant.Identity, "joined")
	}
	f := <-alice.Frames()
	fmt.Printf("%s hears %s: %q\n", alice.Identity(), f.From.Identity, f.Data)

	if err := bob.Leave(); err != nil {
		log.Fatal(err)
	}
	for ev := range alice.Events() {
		if e, ok := ev.(client.ParticipantLeft); ok {
			fmt.Println(e.Participant.Identity, "left:", e.Reason)
			break
		}
	}
	// Output:
	// bob joined
	// alice hears bob: "opus frame"
	// bob left: left
}
