package web_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/loopback"
)

// joinPlain joins the room with a bare pion peer that speaks the signaling
// API but no end-to-end encryption, and sends plain Opus frames until the
// test ends. Declaring e2ee (api.E2EESotto1) all the same, it is what a
// broken or hostile client would publish; declaring nothing, an honest
// client on another stack.
func joinPlain(t *testing.T, srv *callServer, room, token, e2ee string) string {
	t.Helper()
	pc, err := loopback.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "plain")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	jr, err := loopback.JoinDeclaring(ctx, pc, srv.URL, room, token, e2ee)
	if err != nil {
		t.Fatalf("plain join: %v", err)
	}

	// The event stream keeps the participant in the room; server offers
	// are answered so that the relay's renegotiation goes on.
	conn, err := loopback.Events(ctx, srv.URL, jr)
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		defer conn.CloseNow()
		loopback.AnswerOffers(ctx, pc, conn)
	})
	// An Opus frame in the clear: a CELT 20 ms TOC and random bits, which a
	// decoder would turn into loud noise.
	frame := make([]byte, 81)
	frame[0] = 0xf8
	rand.Read(frame[1:])
	wg.Go(func() { loopback.Talk(ctx, track, frame) })
	return jr.ParticipantID
}

// TestBrowserUndecryptablePeer: a participant that claims to encrypt but
// whose frames are not end-to-end encrypted is flagged in the page, and
// its frames are dropped rather than played.
func TestBrowserUndecryptablePeer(t *testing.T) {
	srv := startCallServer(t)
	alice := openPage(t, "alice", browsertest.WriteToneWAV(t, 5*time.Second))
	started := alice.startCall(srv, "Alice")
	invite := started.InviteLink[len(srv.URL+"/join#invite="):]
	rr := redeem(t, srv, alice, invite, "Mallory")
	malloryID := joinPlain(t, srv, rr.Room, rr.Token, api.E2EESotto1)

	s := alice.waitFailing(malloryID, "the undecryptable peer flagged")
	if !strings.Contains(s.Banner, "cannot be decrypted") {
		t.Errorf("banner %q; want the cannot-be-decrypted message", s.Banner)
	}
	for _, p := range s.Participants {
		if p.ID == malloryID && p.Encrypted {
			t.Errorf("a peer without keys is shown encrypted")
		}
	}
	st := alice.stats()
	if st.Decrypt == nil || st.Decrypt.ByParticipant[malloryID].Decrypted != 0 || st.failures() == 0 {
		b, _ := json.Marshal(st)
		t.Fatalf("plain frames were not dropped as failures: %s", b)
	}
	// The packets arrived, but nothing reached the decoder: no audio
	// energy from the plain sender.
	in, ok := st.Inbound[malloryID]
	if !ok || in.Packets == 0 {
		t.Fatalf("no RTP from the plain sender reached the page (%+v)", st.Inbound)
	}
	if in.Energy != 0 {
		t.Errorf("plain frames were played: audio energy %v", in.Energy)
	}
	t.Logf("plain sender: %d packets received, energy %v, %d frames dropped", in.Packets, in.Energy, st.failures())
}

// TestBrowserNotEncryptedPeer: a participant that declares no end-to-end
// encryption (a client on another stack) is shown as "not encrypted —
// cannot be heard" from the moment it joins, gets no keys, and its frames
// are never played.
func TestBrowserNotEncryptedPeer(t *testing.T) {
	srv := startCallServer(t)
	alice := openPage(t, "alice", browsertest.WriteToneWAV(t, 5*time.Second))
	started := alice.startCall(srv, "Alice")
	invite := started.InviteLink[len(srv.URL+"/join#invite="):]
	rr := redeem(t, srv, alice, invite, "Native")
	nativeID := joinPlain(t, srv, rr.Room, rr.Token, "")

	alice.waitState("the plain peer listed", func(s pageState) bool { return slices.Contains(s.peers(), nativeID) })
	sel := `[data-participant="` + nativeID + `"] .p-enc`
	if got := alice.text(sel); got != "Not encrypted — cannot be heard" {
		t.Errorf("badge of the plain peer: %q", got)
	}
	st := alice.waitStats("two seconds of the plain peer's packets", func(s pageStats) bool { return s.Inbound[nativeID].Packets > 100 })
	if in := st.Inbound[nativeID]; in.Energy != 0 {
		t.Errorf("plain frames were played: audio energy %v", in.Energy)
	}
	s := alice.state()
	for _, p := range s.Participants {
		if p.ID == nativeID && (p.Encrypted || p.Failing != "") {
			t.Errorf("plain peer shown encrypted or failing: %+v", p)
		}
	}
	if s.Banner != "" {
		t.Errorf("banner %q for a peer shown as not encrypted", s.Banner)
	}
	if got := alice.text(sel); got != "Not encrypted — cannot be heard" {
		t.Errorf("badge of the plain peer after its frames: %q", got)
	}
}
