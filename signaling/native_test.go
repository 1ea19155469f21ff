package signaling

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/loopback"
)

// joinAs joins room as identity with p, declaring e2ee, and applies the
// answer.
func (s *testServer) joinAs(room, identity, e2ee string, p *peer) api.JoinResponse {
	s.t.Helper()
	ctx, cancel := contextWithWait()
	defer cancel()
	jr, err := loopback.JoinDeclaring(ctx, p.pc, s.ts.URL, room, mintToken(s.t, room, identity), e2ee)
	if err != nil {
		s.t.Fatalf("%s joins %s: %v", identity, room, err)
	}
	return jr
}

func TestE2EEDeclarationRelayed(t *testing.T) {
	s := newTestServer(t, nil)
	a := s.joinAs("r1", "alice", api.E2EESotto1, newPeer(t, webrtc.MimeTypeOpus))
	ea := s.connect(a)
	// Bob declares nothing: he is seen as such, in every roster message.
	b := s.joinAs("r1", "bob", "", newPeer(t, webrtc.MimeTypeOpus))
	wantA := api.Participant{ID: a.ParticipantID, Identity: "alice", E2EE: api.E2EESotto1}
	wantB := api.Participant{ID: b.ParticipantID, Identity: "bob"}
	var j api.Joined
	ea.decode(ea.expect(api.TypeJoined), &j)
	if j.Participant != wantB || j.Participant.Encrypted() {
		t.Errorf("joined %+v, want %+v, not encrypted", j.Participant, wantB)
	}
	if len(b.Participants) != 1 || b.Participants[0] != wantA || !b.Participants[0].Encrypted() {
		t.Errorf("join response lists %+v, want %+v, encrypted", b.Participants, wantA)
	}
	eb := s.connectRaw(b)
	var w api.Welcome
	eb.decode(eb.expect(api.TypeWelcome), &w)
	if len(w.Participants) != 1 || w.Participants[0] != wantA {
		t.Errorf("welcome lists %+v, want %+v", w.Participants, wantA)
	}
	eb.send(map[string]string{"type": api.TypeLeave})
	var l api.Left
	ea.decode(ea.expect(api.TypeLeft), &l)
	if l.Participant != wantB {
		t.Errorf("left %+v, want %+v", l.Participant, wantB)
	}

	// A declaration that is not a plain name is refused before anything
	// else happens.
	for _, bad := range []string{"Sotto 1", "sotto-1\n", "x/y", "a-name-longer-than-thirty-two-chars"} {
		body, _ := json.Marshal(api.JoinRequest{SDP: "v=0", E2EE: bad})
		status, resp := s.do(http.MethodPost, "/v1/rooms/r1/join", "Bearer "+mintToken(t, "r1", "carol"), body)
		s.expectError(status, resp, http.StatusBadRequest, api.CodeBadRequest)
	}
}

func TestListenOnlyJoin(t *testing.T) {
	s := newTestServer(t, nil)
	a, _ := s.join("r1", "alice")
	ea := s.connect(a)

	// A client whose audio transceiver only receives: no track.
	listener := newPeer(t, webrtc.MimeTypeOpus)
	for _, tr := range listener.pc.GetTransceivers() {
		if err := listener.pc.RemoveTrack(tr.Sender()); err != nil {
			t.Fatal(err)
		}
	}
	l := s.joinAs("r1", "lurker", api.E2EESotto1, listener)
	if offer := listener.pc.LocalDescription().SDP; !strings.Contains(offer, "a=recvonly") || strings.Contains(offer, "a=sendrecv") {
		t.Fatalf("the listener's offer is not recvonly:\n%s", offer)
	}
	el := s.connect(l)
	// The listener is offered Alice's track; Alice is offered nothing.
	var o api.SDP
	el.decode(el.expect(api.TypeOffer), &o)
	if !strings.Contains(o.SDP, "a=msid:"+a.ParticipantID+" ") {
		t.Errorf("the listener's offer lacks Alice's track:\n%s", o.SDP)
	}
	el.send(api.SDP{Type: api.TypeAnswer, SDP: listener.answer(t, o.SDP)})
	el.send(map[string]string{"type": api.TypeLeave})
	el.expectClosed(api.ReasonLeft)
	for _, want := range []string{api.TypeJoined, api.TypeLeft} {
		m, err := ea.next()
		for err == nil && m.Type != want {
			if m.Type == api.TypeOffer {
				t.Fatalf("alice was offered something for a listener: %s", m.Raw)
			}
			m, err = ea.next()
		}
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
	}
}

func TestCandidatesThatDoNotApply(t *testing.T) {
	s := newTestServer(t, nil)
	a, _ := s.join("r1", "alice")
	ea := s.connect(a)
	const line = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
	for _, raw := range []string{
		`{"type": "candidate", "candidate": {"candidate": "` + line + `", "sdpMid": "nope"}}`,
		`{"type": "candidate", "candidate": {"candidate": "` + line + `"}}`,
		`{"type": "candidate", "candidate": {"candidate": "` + line + `", "sdpMLineIndex": 9}}`,
		`{"type": "candidate", "candidate": {"candidate": "` + line + `", "sdpMid": "0", "usernameFragment": "x y"}}`,
		`{"type": "candidate", "candidate": {"candidate": "candidate:garbage", "sdpMid": "0"}}`,
	} {
		ea.sendRaw([]byte(raw))
		ea.expectError(api.CodeNegotiation)
	}
	// A candidate that applies is taken without a word; the stream goes on.
	ea.sendRaw([]byte(`{"type": "candidate", "candidate": {"candidate": "` + line + `", "sdpMid": "0"}}`))
	ea.send(map[string]string{"type": api.TypeLeave})
	ea.expectClosed(api.ReasonLeft)
}
