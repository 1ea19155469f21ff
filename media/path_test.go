package media

import (
	"strings"
	"testing"
)

// TestClientAsDTLSClient: the relay connects to clients (a=setup:active)
// unless a client's offer insists on connecting itself (a=setup:active):
// then the relay is the DTLS server, and they talk.
func TestClientAsDTLSClient(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("dtls-roles", nil)
	alice := joinClient(t, r, "alice", clientOptions{})
	bob, offer := newClient(t, "bob", clientOptions{})
	if answer := alice.joinAnswer; !strings.Contains(answer, "a=setup:active") {
		t.Fatalf("answer to an actpass client:\n%s", answer)
	}
	active := strings.ReplaceAll(offer, "a=setup:actpass", "a=setup:active")
	if active == offer {
		t.Fatalf("offer has no a=setup:actpass:\n%s", offer)
	}
	bob.join(r, active)
	if answer := bob.joinAnswer; !strings.Contains(answer, "a=setup:passive") {
		t.Fatalf("answer to an active client:\n%s", answer)
	}
	alice.waitReceiving(t, 25, "bob")
	bob.waitReceiving(t, 25, "alice")
	checkStream(t, alice, "bob")
	checkStream(t, bob, "alice")
}
