package web_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/loopback"
)

// joinPlain joins the room with a bare pion peer that speaks the signaling
// API but no end-to-end encryption, and sends plain Opus frames until the
// test ends: what a broken or hostile client would publish.
func joinPlain(t *testing.T, srv *callServer, room, token string) string {
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
	jr, err := loopback.Join(ctx, pc, srv.URL, room, token)
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
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				return
			}
			var m api.SDP
			if json.Unmarshal(b, &m) != nil || m.Type != api.TypeOffer {
				continue
			}
			if pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}) != nil {
				continue
			}
			ans, err := pc.CreateAnswer(nil)
			if err != nil || pc.SetLocalDescription(ans) != nil {
				continue
			}
			out, _ := json.Marshal(api.SDP{Type: api.TypeAnswer, SDP: ans.SDP})
			_ = conn.Write(ctx, websocket.MessageText, out)
		}
	})
	// An Opus frame in the clear: a CELT 20 ms TOC and random bits, which a
	// decoder would turn into loud noise.
	frame := make([]byte, 81)
	frame[0] = 0xf8
	rand.Read(frame[1:])
	wg.Go(func() { loopback.Talk(ctx, track, frame) })
	return jr.ParticipantID
}

// TestBrowserUndecryptablePeer: a participant whose frames are not
// end-to-end encrypted is flagged in the page, and its frames are dropped
// rather than played.
func TestBrowserUndecryptablePeer(t *testing.T) {
	srv := startCallServer(t)
	alice := openPage(t, "alice", browsertest.WriteToneWAV(t, 5*time.Second))
	started := alice.startCall(srv, "Alice")
	invite := started.InviteLink[len(srv.URL+"/join#invite="):]
	rr := redeem(t, srv, alice, invite, "Mallory")
	malloryID := joinPlain(t, srv, rr.Room, rr.Token)

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
