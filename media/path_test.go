package media

import (
	"strings"
	"testing"
)

// TestClientAsDTLSServer: a client whose offer insists on being the DTLS
// server (a=setup:passive) gets a relay that connects to it, and talks.
func TestClientAsDTLSServer(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("dtls-roles", nil)
	alice := joinClient(t, r, "alice", clientOptions{})
	bob, offer := newClient(t, "bob", clientOptions{})
	passive := strings.ReplaceAll(offer, "a=setup:actpass", "a=setup:passive")
	if passive == offer {
		t.Fatalf("offer has no a=setup:actpass:\n%s", offer)
	}
	bob.join(r, passive)
	if answer := bob.joinAnswer; !strings.Contains(answer, "a=setup:active") {
		t.Fatalf("answer to a passive client:\n%s", answer)
	}
	alice.waitReceiving(t, 25, "bob")
	bob.waitReceiving(t, 25, "alice")
	checkStream(t, alice, "bob")
	checkStream(t, bob, "alice")
}
