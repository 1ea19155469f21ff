package web_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/sotto-voice/sotto/internal/loopback"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/browsertest"
)

// joinPlain joins the room with a bare pion peer that speaks the signaling
// API but no end-to-end encryption, and sends plain Opus frames until the
// test ends: what a broken or hostile client would publish.
func joinPlain(t *testing.T, srv *callServer, room, token string) string {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := loopback.API(me).NewPeerConnection(webrtc.Configuration{})
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
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered

	body, _ := json.Marshal(api.JoinRequest{SDP: pc.LocalDescription().SDP})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/rooms/"+room+"/join", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var jr api.JoinResponse
	err = json.NewDecoder(resp.Body).Decode(&jr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("plain join: HTTP %d, %v", resp.StatusCode, err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: jr.SDP}); err != nil {
		t.Fatal(err)
	}

	// The event stream keeps the participant in the room; server offers
	// are answered so that the relay's renegotiation goes on.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
	})
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+jr.EventsURL+"?session="+jr.Session, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer func() { done <- struct{}{} }()
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
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		// An Opus frame in the clear: a CELT 20 ms TOC and random bits,
		// which a decoder would turn into loud noise.
		frame := make([]byte, 81)
		frame[0] = 0xf8
		rand.Read(frame[1:])
		everyFrame(ctx, func() { _ = track.WriteSample(media.Sample{Data: frame, Duration: 20 * time.Millisecond}) })
	}()
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
	rr := redeem(t, srv, invite, "Mallory")
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
