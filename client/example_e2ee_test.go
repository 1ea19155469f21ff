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

// Every call is end-to-end encrypted. Alice learns when bob's frames can be
// decrypted, and the two compare safety numbers to make sure that nobody
// sits between them.
func ExampleCall_SafetyNumber() {
	srv, err := testserver.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// One trust store for the application's lifetime remembers the
	// identity keys seen, so that a changed key is reported.
	trust := client.NewMemoryTrustStore()
	opts := &client.Options{
		IPFilter:   func(ip net.IP) bool { return ip.IsLoopback() },
		TrustStore: trust,
	}
	alice, err := client.Join(ctx, srv.URL, srv.Token("standup", "alice"), opts)
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Leave()
	bob, err := client.Join(ctx, srv.URL, srv.Token("standup", "bob"), &client.Options{
		IPFilter: func(ip net.IP) bool { return ip.IsLoopback() },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Leave()

	for ev := range alice.Events() {
		switch e := ev.(type) {
		case client.PeerEncrypted:
			fmt.Println(e.Participant.Identity, "is encrypted")
		case client.IdentityChanged:
			fmt.Println(e.Participant.Identity, "has a new identity key:", e.New)
		default:
			continue
		}
		break
	}
	// Each reads the number out to the other, over the call itself.
	a, err := alice.SafetyNumber(bob.ID())
	if err != nil {
		log.Fatal(err)
	}
	b, err := bob.SafetyNumber(alice.ID())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("same safety number:", a == b)
	if a == b {
		if err := alice.SetVerified(bob.ID(), true); err != nil {
			log.Fatal(err)
		}
	}
	verified, _ := alice.Verified(bob.ID())
	fmt.Println("bob verified:", verified)
	// Output:
	// bob is encrypted
	// same safety number: true
	// bob verified: true
}
