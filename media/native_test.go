package media

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/media/ice"
)

// What a client on another stack relies on: the parameters the relay
// states, listen-only participants, and trickled candidates checked
// against the session.

var fmtpLine = regexp.MustCompile(`a=fmtp:(\d+) (.*)\r\n`)

// opusLines returns the payload types a description maps to Opus, once
// per m-line, and its fmtp values by payload type.
func opusLines(desc string) (pts []string, fmtp map[string][]string) {
	fmtp = make(map[string][]string)
	for _, m := range regexp.MustCompile(`a=rtpmap:(\d+) opus/48000/2\r\n`).FindAllStringSubmatch(desc, -1) {
		pts = append(pts, m[1])
	}
	for _, m := range fmtpLine.FindAllStringSubmatch(desc, -1) {
		fmtp[m[1]] = append(fmtp[m[1]], m[2])
	}
	return pts, fmtp
}

// checkStated fails t unless every Opus payload type of desc is want and
// carries exactly the relay's fmtp line, and NACK feedback is there
// exactly when nack.
func checkStated(t *testing.T, what, desc, want string, nack bool) {
	t.Helper()
	pts, fmtp := opusLines(desc)
	if len(pts) == 0 {
		t.Fatalf("%s maps no payload type to Opus:\n%s", what, desc)
	}
	for _, pt := range pts {
		if pt != want {
			t.Errorf("%s: Opus under payload type %s, want the client's %s", what, pt, want)
		}
	}
	if got := fmtp[want]; len(got) != len(pts) || got[0] != opusFmtp {
		t.Errorf("%s: fmtp lines of %s = %q, want %q once per m-line (%d):\n%s", what, want, got, opusFmtp, len(pts), desc)
	}
	if got := strings.Count(desc, "a=rtcp-fb:"+want+" nack\r\n"); nack && got != len(pts) || !nack && got != 0 {
		t.Errorf("%s: %d NACK lines for %d m-lines, want them exactly when offered (%v)", what, got, len(pts), nack)
	}
}

func TestRelayStatesOpusFormat(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("format", nil)
	// A client such as aiortc: Opus without fmtp and without NACK, under
	// a payload type of its own.
	bare := clientOptions{codec: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}}
	alice, offer := newClient(t, "alice", bare)
	if strings.Contains(offer, "a=fmtp:") || strings.Contains(offer, "nack") {
		t.Fatalf("bare offer has fmtp or NACK:\n%s", offer)
	}
	alice.join(r, offer)
	checkStated(t, "answer to a bare offer", alice.pc.RemoteDescription().SDP, "109", false)

	// A client that offers NACK and its own fmtp.
	nacking := clientOptions{codec: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
		SDPFmtpLine: "stereo=1", RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}},
	}}
	bob := joinClient(t, r, "bob", nacking)
	checkStated(t, "answer to a NACK offer", bob.pc.RemoteDescription().SDP, "109", true)

	// Each one's offers carry the other's track under the same rules, and
	// the audio flows.
	alice.waitReceiving(t, 10, "bob")
	bob.waitReceiving(t, 10, "alice")
	for _, c := range []struct {
		c    *client
		nack bool
	}{{alice, false}, {bob, true}} {
		c.c.mu.Lock()
		offers := append([]string(nil), c.c.offerSDPs...)
		c.c.mu.Unlock()
		if len(offers) == 0 {
			t.Fatalf("%s got no offer", c.c.id)
		}
		for _, o := range offers {
			checkStated(t, c.c.id+"'s offer", o, "109", c.nack)
		}
	}
	checkStream(t, alice, "bob")
	checkStream(t, bob, "alice")
}

func TestListenOnlyReceivesEveryoneAndPublishesNothing(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("listen", nil)
	alice := joinClient(t, r, "alice", clientOptions{})
	bob := joinClient(t, r, "bob", clientOptions{})
	alice.waitReceiving(t, 10, "bob")
	offersBefore := func() map[*client]int {
		m := map[*client]int{}
		for _, c := range []*client{alice, bob} {
			c.mu.Lock()
			m[c] = c.offers
			c.mu.Unlock()
		}
		return m
	}()

	carol, offer := newClient(t, "carol", clientOptions{listenOnly: true})
	if !strings.Contains(offer, "a=recvonly") || strings.Contains(offer, "a=sendrecv") || strings.Contains(offer, "a=sendonly") {
		t.Fatalf("listen-only offer is not recvonly:\n%s", offer)
	}
	carol.join(r, offer)
	// Its m-line carries nothing either way.
	if answer := carol.joinAnswer; !strings.Contains(answer, "a=inactive") || strings.Contains(answer, "a=sendonly") {
		t.Errorf("listen-only answer is not inactive:\n%s", answer)
	}
	carol.waitReceiving(t, 25, "alice", "bob")
	checkStream(t, carol, "alice")
	checkStream(t, carol, "bob")

	carol.mu.Lock()
	for _, o := range carol.offerSDPs {
		for _, m := range strings.Split(o, "m=audio")[1:] {
			if strings.Contains(m, "a=mid:0\r\n") && !strings.Contains(m, "a=inactive") {
				t.Errorf("an offer to carol makes its own m-line other than inactive:\n%s", m)
			}
		}
	}
	carol.mu.Unlock()

	// A newcomer after the listener reaches it too, and the listener
	// reaches nobody.
	dave := joinClient(t, r, "dave", clientOptions{})
	carol.waitReceiving(t, 10, "dave")
	dave.waitReceiving(t, 10, "alice", "bob")
	for _, c := range []*client{alice, bob, dave} {
		if _, _, ok := c.snapshot("carol"); ok {
			t.Errorf("%s got a track of the listen-only carol", c.id)
		}
		c.mu.Lock()
		for _, o := range c.offerSDPs {
			if strings.Contains(o, "carol") {
				t.Errorf("%s was offered a track of the listen-only carol:\n%s", c.id, o)
			}
		}
		c.mu.Unlock()
	}
	wait.For(t, "alice and bob to answer the offer adding dave", func() bool {
		_, _, a := alice.snapshot("dave")
		_, _, b := bob.snapshot("dave")
		return a && b
	})
	// Alice and Bob renegotiated for Dave alone.
	offersSince := func(want int, when string) {
		t.Helper()
		for c, before := range offersBefore {
			c.mu.Lock()
			n := c.offers - before
			c.mu.Unlock()
			if n != want {
				t.Errorf("%s got %d offers %s, want %d (for dave alone)", c.id, n, when, want)
			}
		}
	}
	offersSince(1, "while carol and dave joined")

	// Leaving, the listener costs the others no renegotiation either: the
	// next offer they get is the one for Dave's leaving.
	carol.leave()
	wait.For(t, "carol to be gone", func() bool { return e.Stats().Peers == 3 })
	dave.leave()
	wait.For(t, "alice and bob to lose dave's track", func() bool {
		_, a, _ := alice.snapshot("dave")
		_, b, _ := bob.snapshot("dave")
		return a && b
	})
	offersSince(2, "after carol and dave left")
	if s := e.Stats(); s.Dropped["unknown_ssrc"] != 0 {
		t.Errorf("drops %v: the listener sent media", s.Dropped)
	}
}

func TestCheckCandidate(t *testing.T) {
	n := &negotiation{
		remoteICE: ice.Credentials{Ufrag: "abcd", Pwd: "efghijklmnopqrstuvwxyz"},
		lines:     []*localMLine{{mid: "0", media: "audio"}, {mid: "1", media: "audio"}},
	}
	str := func(s string) *string { return &s }
	idx := func(i uint16) *uint16 { return &i }
	const line = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
	for _, tc := range []struct {
		name string
		c    api.ICECandidate
		ok   bool
	}{
		{"mid", api.ICECandidate{Candidate: line, SDPMid: str("1")}, true},
		{"index", api.ICECandidate{Candidate: line, SDPMLineIndex: idx(1)}, true},
		{"mid wins over index", api.ICECandidate{Candidate: line, SDPMid: str("0"), SDPMLineIndex: idx(7)}, true},
		{"ufrag", api.ICECandidate{Candidate: line, SDPMid: str("0"), UsernameFragment: str("abcd")}, true},
		{"ufrag in the line", api.ICECandidate{Candidate: line + " ufrag abcd", SDPMid: str("0")}, true},
		{"end of candidates", api.ICECandidate{}, true},
		{"end of candidates of an m-line", api.ICECandidate{SDPMid: str("0")}, true},
		{"no m-line", api.ICECandidate{Candidate: line}, false},
		{"unknown mid", api.ICECandidate{Candidate: line, SDPMid: str("2")}, false},
		{"empty mid", api.ICECandidate{Candidate: line, SDPMid: str("")}, false},
		{"index out of range", api.ICECandidate{Candidate: line, SDPMLineIndex: idx(2)}, false},
		{"other ufrag", api.ICECandidate{Candidate: line, SDPMid: str("0"), UsernameFragment: str("abcd ")}, false},
		{"other ufrag in the line", api.ICECandidate{Candidate: line + " ufrag zzzz", SDPMid: str("0")}, false},
		{"end of candidates, other ufrag", api.ICECandidate{SDPMid: str("0"), UsernameFragment: str("x")}, false},
	} {
		err := checkCandidate(n, tc.c)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, ErrCandidate) {
			t.Errorf("%s: err = %v, want ErrCandidate", tc.name, err)
		}
	}
}
