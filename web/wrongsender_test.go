package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/client"
	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/loopback"
)

// speak makes a Go caller send a valid Opus frame (20 ms of CELT silence)
// every 20 ms until the test ends (frames after a leave are refused).
func speak(t *testing.T, g *goCaller) { speakWhile(t, g, func() bool { return true }) }

// speakWhile is speak, skipping the frames for which talking says false.
func speakWhile(t *testing.T, g *goCaller, talking func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		loopback.EveryFrame(ctx, func() {
			if !talking() {
				return
			}
			err := g.call.WriteFrame([]byte{0xf8, 0xff, 0xfe}, 20*time.Millisecond)
			if err != nil && !errors.Is(err, client.ErrClosed) {
				g.t.Logf("speak: %v", err)
			}
		})
	}()
}

var msidPattern = regexp.MustCompile(`msid:\S+ `)

// presentTracksAs rewrites the server's offers so that every track is
// announced as participant's: the page then receives every other
// publisher's frames on a track of participant's, as a relay that moves
// one caller's encrypted frames under another's name would deliver them.
func presentTracksAs(participant string) filter {
	return func(typ string, msg []byte) []byte {
		var o api.SDP
		if typ != api.TypeOffer || json.Unmarshal(msg, &o) != nil {
			return msg
		}
		o.SDP = msidPattern.ReplaceAllLiteralString(o.SDP, "msid:"+participant+" ")
		out, err := json.Marshal(o)
		if err != nil {
			return msg
		}
		return out
	}
}

// TestBrowserFramesUnderAnotherName: the relay announces Ben's track as
// Ann's, so that Ben's encrypted frames reach the page on a track of
// Ann's. The page must not play them as Ann's: they authenticate under
// Ben's key, not hers, and are dropped as wrong_sender (docs/PROTOCOL.md
// §9 step 5), while Ann's own frames on her own track still play, and the
// page says that the audio arriving as Ann's is not hers.
func TestBrowserFramesUnderAnotherName(t *testing.T) {
	srv, proxy := startProxiedCallServer(t)
	pat := openPage(t, "pat", browsertest.WriteToneWAV(t, 10*time.Second))
	started := pat.startCall(srv, "Pat")
	proxy.watch(started.SelfID)
	invite := started.InviteLink[len(srv.URL+"/join#invite="):]

	ann := joinGo(t, srv, redeem(t, srv, pat, invite, "Ann").Token, false)
	annID := ann.call.ID()
	speak(t, ann)
	pat.waitEncrypted(1)
	proxy.filter(presentTracksAs(annID), nil)
	ben := joinGo(t, srv, redeem(t, srv, pat, invite, "Ben").Token, false)
	benID := ben.call.ID()
	speak(t, ben)
	pat.waitEncrypted(2)

	// Every frame the page plays as Ann's must be one Ann sent: Ben's
	// frames played under her name push the count past hers.
	var sent uint64
	st := pat.waitStats("Ben's frames on Ann's track dropped, or played", func(s pageStats) bool {
		if s.Decrypt == nil {
			return false
		}
		a := s.Decrypt.ByParticipant[annID]
		sent = ann.call.Stats().FramesEncrypted
		return a.Decrypted > 100 && (a.WrongSender > 100 || uint64(a.Decrypted) > sent)
	})
	a := st.Decrypt.ByParticipant[annID]
	b, _ := json.Marshal(st.Decrypt)
	if uint64(a.Decrypted) > sent {
		t.Fatalf("the page played %d frames as Ann's, who sent %d: another's frames were played under her name (%s)", a.Decrypted, sent, b)
	}
	if a.WrongSender == 0 || st.Decrypt.WrongSender != a.WrongSender {
		t.Fatalf("Ben's frames on Ann's track are not counted as wrong_sender under Ann: %s", b)
	}
	if n := st.Decrypt.ByParticipant[benID].Decrypted; n != 0 {
		t.Errorf("the page played %d frames as Ben's, who has no track of his own here", n)
	}

	s := pat.waitFailing(annID, "Ann's track flagged")
	if !strings.Contains(s.Banner, "another participant's key") {
		t.Errorf("banner %q: want the warning about another participant's key", s.Banner)
	}
	t.Logf("Ann sent %d frames; the page played %d as hers and dropped %d of Ben's as wrong_sender", sent, a.Decrypted, a.WrongSender)
}

// rememberPeerConnectionsScript runs before the page's own scripts and
// keeps every peer connection the page makes in window.__testPCs.
const rememberPeerConnectionsScript = `(() => {
  const Native = window.RTCPeerConnection;
  if (!Native) return;
  window.__testPCs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.__testPCs.push(this);
    }
  };
})()`

// TestBrowserReusedTrackNewPublisher: when Ann leaves, the relay reuses
// the transceiver that carried her audio, and its SSRC, for Ben, who joins
// next. The page decrypts Ben's frames on it as Ben's: none is taken for
// someone else's, and none reaches the decoder undecrypted (Chromium keeps
// no frame transform on such a receiver unless the page sets it up anew).
func TestBrowserReusedTrackNewPublisher(t *testing.T) {
	srv := startCallServer(t)
	pat := openPage(t, "pat", browsertest.WriteToneWAV(t, 10*time.Second))
	pat.onNewDocument(rememberPeerConnectionsScript, "the peer connection hook")
	started := pat.startCall(srv, "Pat")
	invite := started.InviteLink[len(srv.URL+"/join#invite="):]

	ann := joinGo(t, srv, redeem(t, srv, pat, invite, "Ann").Token, false)
	annID := ann.call.ID()
	speak(t, ann)
	pat.waitEncrypted(1)
	pat.waitStats("Ann's frames played", func(s pageStats) bool {
		return s.Decrypt != nil && s.Decrypt.ByParticipant[annID].Decrypted > 50
	})
	if err := ann.call.Leave(); err != nil {
		t.Fatalf("Ann leave: %v", err)
	}
	pat.waitState("Ann gone", func(s pageState) bool { return len(s.peers()) == 0 })

	ben := joinGo(t, srv, redeem(t, srv, pat, invite, "Ben").Token, false)
	benID := ben.call.ID()
	speak(t, ben)
	pat.waitEncrypted(1)
	st := pat.waitStats("Ben's frames played as his", func(s pageStats) bool {
		return s.Decrypt != nil && s.Decrypt.ByParticipant[benID].Decrypted > 100
	})
	if st.Decrypt.WrongSender != 0 || st.failures() != 0 {
		b, _ := json.Marshal(st.Decrypt)
		t.Errorf("frames failed on the reused track: %s", b)
	}
	// Ben sends digital silence: any energy is something the page played
	// without decrypting it.
	if e := st.Inbound[benID].Energy; e != 0 {
		t.Errorf("the page played audio with energy %v on Ben's track, who sends silence", e)
	}
	var transceivers int
	if err := pat.eval(`window.__testPCs.at(-1).getTransceivers().length`, &transceivers); err != nil {
		t.Fatalf("pat: transceivers: %v", err)
	}
	if transceivers != 2 {
		t.Errorf("the page has %d transceivers, want 2 (its own, and Ann's reused for Ben)", transceivers)
	}
}
