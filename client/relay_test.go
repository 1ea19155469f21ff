package client

import (
	"context"
	"fmt"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
)

// A caller restricted to TURN relays (Options.RelayOnly) completes an
// encrypted call with a caller on a direct path, through the server's
// embedded TURN, once for each transport of the TURN leg. The server offers
// only that transport's TURN URL, in the ICE servers of its join response,
// and admits the media server's UDP port on its loopback address, which the
// relay otherwise refuses.
func TestRelayOnlyCall(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
			defer cancel()
			srv := testserver.Start(t, &testserver.Options{TURN: true, TURNTransport: transport})

			direct := joinPeer(ctx, t, srv, "relayed", "direct")
			relayed := joinPeerWith(ctx, t, srv, "relayed", "behind-firewall", &Options{IPFilter: loopback, RelayOnly: true})
			talkAndCheck(ctx, t, []*peer{direct, relayed}, 50)
			for _, p := range []*peer{direct, relayed} {
				other := direct
				if p == direct {
					other = relayed
				}
				if _, ok := p.findEvent(isPeerEncrypted(other.call.ID())); !ok {
					t.Errorf("%s: no end-to-end session with %s", p.name, other.name)
				}
			}

			local, proto, err := relayPath(relayed.call)
			if err != nil {
				t.Fatal(err)
			}
			if local.Typ != webrtc.ICECandidateTypeRelay || proto != transport {
				t.Fatalf("relay-only caller's selected local candidate %s (TURN over %q), want a relay candidate over %s", local, proto, transport)
			}
			t.Logf("selected %s over %s", local, proto)
			st := srv.TURN.Stats()
			if st.AllocationsCreated == 0 || st.AllocationsActive == 0 {
				t.Fatalf("TURN stats %+v: no allocation", st)
			}
			if transport == "tcp" && st.TCPConns == 0 {
				t.Fatalf("TURN stats %+v: no TCP connection", st)
			}
			if st.DeniedPeer != 0 || st.BadCredentials != 0 {
				t.Fatalf("TURN stats %+v: refusals", st)
			}
		})
	}
}

func isPeerEncrypted(id string) func(Event) bool {
	return func(e Event) bool {
		p, ok := e.(PeerEncrypted)
		return ok && p.Participant.ID == id
	}
}

// relayPath returns the local candidate of c's selected ICE pair and, for a
// relay candidate, the transport its TURN leg uses ("udp", "tcp" or "tls").
func relayPath(c *Call) (*webrtc.ICECandidate, string, error) {
	senders := c.tconn().pc.GetSenders()
	if len(senders) == 0 || senders[0].Transport() == nil {
		return nil, "", fmt.Errorf("no transport")
	}
	pair, err := senders[0].Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return nil, "", fmt.Errorf("no selected candidate pair: %v", err)
	}
	for _, s := range c.tconn().pc.GetStats() {
		cs, ok := s.(webrtc.ICECandidateStats)
		if ok && cs.Type == webrtc.StatsTypeLocalCandidate && cs.IP == pair.Local.Address && cs.Port == int32(pair.Local.Port) {
			return pair.Local, cs.RelayProtocol, nil
		}
	}
	return pair.Local, "", nil
}
