package web_test

import (
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/testserver"
)

// forceRelayScript runs before the page's own scripts: every peer
// connection the page makes is restricted to TURN relays, as
// iceTransportPolicy "relay" does for a caller behind a strict firewall, and
// remembered so that the test can read its selected candidate pair.
const forceRelayScript = `(() => {
  const Native = window.RTCPeerConnection;
  if (!Native) return;
  window.__relayTestPCs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(config, ...rest) {
      super({ ...(config || {}), iceTransportPolicy: 'relay' }, ...rest);
      window.__relayTestPCs.push(this);
    }
  };
})()`

// selectedPairScript reports the local candidate of the newest peer
// connection's selected pair.
const selectedPairScript = `(async () => {
  const pc = (window.__relayTestPCs || []).at(-1);
  if (!pc) return { error: 'no peer connection' };
  const stats = await pc.getStats();
  let pair;
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
  });
  if (!pair) return { error: 'no selected candidate pair' };
  const local = stats.get(pair.localCandidateId);
  return { type: local.candidateType, relayProtocol: local.relayProtocol || '', address: local.address + ':' + local.port };
})()`

type localCandidate struct {
	Type          string `json:"type"`
	RelayProtocol string `json:"relayProtocol"`
	Address       string `json:"address"`
	Error         string `json:"error"`
}

// TestBrowserRelayCall: the two-browser call with Bob's browser forced to
// TURN relays (iceTransportPolicy "relay"). The server's embedded TURN,
// whose URLs and credentials the page gets with its join, relays Bob's
// media to the media server; both decrypt each other's audio.
func TestBrowserRelayCall(t *testing.T) {
	srv := startCallServerWith(t, &testserver.Options{TURN: true})
	wav := browsertest.WriteToneWAV(t, 10*time.Second)
	alice := openPage(t, "alice", wav)
	bob := openPage(t, "bob", wav)
	bob.onNewDocument(forceRelayScript, "the relay-only policy")

	started := alice.startCall(srv, "Alice")
	bob.joinAsGuest(alice, started.InviteLink, "Alice", "Bob")
	checkTalking(t, alice, bob)

	var local localCandidate
	if err := bob.eval(selectedPairScript, &local); err != nil {
		t.Fatalf("bob: selected pair: %v", err)
	}
	t.Logf("bob: selected local candidate %+v", local)
	if local.Type != "relay" {
		t.Fatalf("bob's selected local candidate %+v, want a relay candidate", local)
	}
	if st := srv.TURN.Stats(); st.AllocationsCreated == 0 || st.DeniedPeer != 0 || st.BadCredentials != 0 {
		t.Fatalf("TURN stats %+v: want allocations and no refusals", st)
	}
}
