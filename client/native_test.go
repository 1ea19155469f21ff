package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sotto-voice/sotto/api"
	raw "github.com/sotto-voice/sotto/internal/loopback"
	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
)

// A listen-only call hears everyone, decrypted, and is heard by nobody: it
// publishes no track and WriteFrame refuses.
func TestListenOnlyCall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	alice := joinPeer(ctx, t, srv, "room", "alice")
	bob := joinPeer(ctx, t, srv, "room", "bob")
	carol := joinWith(ctx, t, srv, "room", "carol", &Options{ListenOnly: true})

	if err := carol.call.WriteFrame([]byte("opus"), 20*time.Millisecond); !errors.Is(err, ErrListenOnly) {
		t.Errorf("listen-only WriteFrame: err = %v, want ErrListenOnly", err)
	}
	alice.talk()
	bob.talk()
	hears(ctx, t, carol, alice, bob)
	hears(ctx, t, alice, bob)
	start := int(alice.sent.Load())
	wait.Until(ctx, t, "alice sends 25 more frames", func() bool { return int(alice.sent.Load()) >= start+25 })
	end := alice.stop()
	bob.stop()
	wait.Until(ctx, t, "carol receives alice's last frame", func() bool { return carol.lastIndex("alice") == end-1 })
	checkStream(t, carol, alice, start, end)

	for _, p := range []*peer{alice, bob} {
		e := waitEvent(ctx, t, p, "carol join", isJoined(carol.call.ID()))
		if !e.(ParticipantJoined).Participant.Encrypted() {
			t.Errorf("%s sees the listener as not encrypted", p.name)
		}
		if n := len(p.received("carol")); n != 0 {
			t.Errorf("%s received %d frames from the listener", p.name, n)
		}
	}
	if s := srv.Media.Stats(); s.Tracks != 2 {
		t.Errorf("relay forwards %d published tracks, want alice's and bob's", s.Tracks)
	}
}

// plainCaller is a client on another stack that implements the API but not
// docs/PROTOCOL.md: it declares no encryption and sends plain Opus.
func plainCaller(ctx context.Context, t *testing.T, srv *testserver.Server, room, identity string) api.JoinResponse {
	t.Helper()
	pc, err := raw.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	track, err := webrtc.NewTrackLocalStaticSample(opusCodec, "audio", "plain")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	jr, err := raw.Join(ctx, pc, srv.URL, room, srv.Token(room, identity))
	if err != nil {
		t.Fatal(err)
	}
	ws, err := raw.Events(ctx, srv.URL, jr)
	if err != nil {
		t.Fatal(err)
	}
	talkCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		raw.Talk(talkCtx, track, []byte("plain opus frame"))
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		raw.AnswerOffers(talkCtx, pc, ws)
	}()
	t.Cleanup(func() {
		stop()
		ws.CloseNow()
		<-done
		<-done
	})
	return jr
}

// A participant that does not encrypt is shown as such: its join says so,
// a PeerNotEncrypted event follows, and its frames are counted as
// not_encrypted, never delivered and never taken for decryption failures.
func TestNotEncryptedParticipantShown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	alice := joinPeer(ctx, t, srv, "room", "alice")
	plain := plainCaller(ctx, t, srv, "room", "plain")

	e := waitEvent(ctx, t, alice, "plain join", isJoined(plain.ParticipantID))
	if p := e.(ParticipantJoined).Participant; p.Encrypted() || p.E2EE != "" {
		t.Errorf("joined %+v: shown as encrypted", p)
	}
	waitEvent(ctx, t, alice, "plain not encrypted", func(e Event) bool {
		ne, ok := e.(PeerNotEncrypted)
		return ok && ne.Participant.ID == plain.ParticipantID && ne.Participant.Identity == "plain"
	})
	var roster []api.Participant
	for _, p := range alice.call.Participants() {
		if p.ID == plain.ParticipantID {
			roster = append(roster, p)
		}
	}
	if len(roster) != 1 || roster[0].Encrypted() {
		t.Errorf("roster shows %+v", roster)
	}
	wait.Until(ctx, t, "alice to drop 25 plain frames", func() bool { return alice.call.Stats().Dropped[DropNotEncrypted] >= 25 })
	s := alice.call.Stats()
	if f := s.DecryptFailures(); f != 0 {
		t.Errorf("%d decryption failures (%v): plain frames counted as failures", f, s.Dropped)
	}
	if n := len(alice.received("plain")); n != 0 {
		t.Errorf("%d plain frames delivered", n)
	}
	if _, ok := alice.findEvent(isEncrypted(plain.ParticipantID)); ok {
		t.Error("PeerEncrypted for a participant that does not encrypt")
	}

	// Bob, who encrypts, is heard as ever next to it.
	bob := joinPeer(ctx, t, srv, "room", "bob")
	bob.talk()
	hears(ctx, t, alice, bob)
	bob.stop()
}
