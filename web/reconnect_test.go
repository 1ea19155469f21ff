package web_test

import (
	"encoding/json"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/client"
	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/wait"
)

// TestBrowserEventStreamReconnect: messages written to an event stream
// that then dies are lost (docs/PROTOCOL.md §9 step 10). Pat's stream
// loses Cy's "left": after the reconnect the page treats Cy, whom the new
// welcome no longer lists, as gone, and starts a fresh chain that Cy
// never gets. The next stream loses the key of that chain on its way to
// Ann, so Ann cannot open Pat's frames; once Pat's stream is back again,
// he sends his keys anew and Ann decrypts him again.
func TestBrowserEventStreamReconnect(t *testing.T) {
	srv, proxy := startProxiedCallServer(t)
	pat := openPage(t, "pat", browsertest.WriteToneWAV(t, 10*time.Second))
	started := pat.startCall(srv, "Pat")
	patID := started.SelfID
	proxy.watch(patID)
	invite := started.InviteLink[len(srv.URL+"/join#invite="):]
	ann := joinGo(t, srv, redeem(t, srv, pat, invite, "Ann").Token, false)
	cy := joinGo(t, srv, redeem(t, srv, pat, invite, "Cy").Token, false)
	annID, cyID := ann.call.ID(), cy.call.ID()
	speak(t, ann)
	pat.waitEncrypted(2)
	wait.For(t, "Ann to decrypt Pat", func() bool { return ann.framesFrom(patID) > 50 })
	pat.waitStats("Pat to decrypt Ann", func(st pageStats) bool {
		return st.Decrypt != nil && st.Decrypt.ByParticipant[annID].Decrypted > 50
	})
	before := pat.state().SendKey
	if before == nil {
		t.Fatal("the page reports no send key")
	}

	// Cy leaves; the "left" sent to Pat goes down with his stream. What
	// else his leave brings Pat (the relay's offer, Ann's fresh chain) is
	// through before the stream is cut: this test loses nothing else.
	var lostLeft atomic.Bool
	var answers atomic.Int32
	proxy.filter(func(typ string, msg []byte) []byte {
		var l api.Left
		if typ == api.TypeLeft && json.Unmarshal(msg, &l) == nil && l.Participant.ID == cyID {
			lostLeft.Store(true)
			return nil
		}
		return msg
	}, func(typ string, msg []byte) []byte {
		if typ == api.TypeAnswer {
			answers.Add(1)
		}
		return msg
	})
	rekeys := ann.call.Stats().Rekeys
	if err := cy.call.Leave(); err != nil {
		t.Fatalf("Cy leave: %v", err)
	}
	wait.For(t, "Cy's left to be lost, the relay's offer answered and Ann to rekey", func() bool {
		return lostLeft.Load() && answers.Load() > 0 && ann.call.Stats().Rekeys > rekeys
	})
	// Two seconds of Ann's audio: more than her switch delay, so Pat
	// decrypts her fresh chain.
	heardAnn := pat.stats().Decrypt.ByParticipant[annID].Decrypted
	pat.waitStats("Pat decrypting Ann's fresh chain", func(st pageStats) bool {
		return st.Decrypt.ByParticipant[annID].Decrypted > heardAnn+100
	})
	if s := pat.state(); !slices.Contains(s.peers(), cyID) {
		t.Fatalf("the page dropped Cy though his left was lost: %+v", s.Participants)
	}

	// The next stream loses every envelope Pat sends: his new key too.
	var lostEnvelopes atomic.Int32
	proxy.filter(nil, func(typ string, msg []byte) []byte {
		if typ == api.TypeEnvelope {
			lostEnvelopes.Add(1)
			return nil
		}
		return msg
	})
	proxy.cut()
	s := pat.waitState("Cy gone after the reconnect, and a fresh chain in use", func(s pageState) bool {
		return !slices.Contains(s.peers(), cyID) && s.SendKey != nil && s.SendKey.Generation != before.Generation
	})
	if !slices.Equal(s.peers(), []string{annID}) {
		t.Errorf("the page lists %v after the reconnect, want Ann (%s) alone", s.peers(), annID)
	}
	if s.SendKey.SenderIndex != before.SenderIndex || s.SendKey.Generation != before.Generation+1 || s.SendKey.Step != 0 {
		t.Errorf("send key %+v after Cy's leave, want sender index %d, generation %d, step 0", *s.SendKey, before.SenderIndex, before.Generation+1)
	}
	awaiting := func() uint64 { return ann.call.Stats().Dropped[client.DropAwaitingKey] }
	waiting := awaiting()
	wait.For(t, "Ann to get Pat's frames under the key she lost", func() bool { return awaiting() > waiting+20 })
	if lostEnvelopes.Load() == 0 {
		t.Fatal("no envelope of Pat's was lost")
	}

	// A stream that delivers again: Pat sends his keys anew.
	heard := ann.framesFrom(patID)
	streams := proxy.opened()
	proxy.filter(nil, nil)
	proxy.cut()
	wait.For(t, "Ann to decrypt Pat again", func() bool { return ann.framesFrom(patID) > heard+50 })
	if n := proxy.opened(); n <= streams {
		t.Errorf("the page opened %d event streams, want more than %d", n, streams)
	}
	heardAnn = pat.stats().Decrypt.ByParticipant[annID].Decrypted
	pat.waitStats("Pat still decrypting Ann", func(st pageStats) bool {
		return st.Decrypt.ByParticipant[annID].Decrypted > heardAnn+50
	})
	if st := pat.stats(); st.failures() != 0 {
		b, _ := json.Marshal(st.Decrypt)
		t.Errorf("the page failed to decrypt %d frames: %s", st.failures(), b)
	}
	ann.checkClean("Ann")
}
