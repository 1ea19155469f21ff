package media

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/wait"
)

// TestRenegotiationQueuedWhileOfferInFlight: changes that arrive while a
// peer's offer awaits its answer go out together in one more offer after
// the answer.
func TestRenegotiationQueuedWhileOfferInFlight(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("queue", nil)
	alice := joinClient(t, r, "alice", clientOptions{holdOffers: true})
	joinClient(t, r, "bob", clientOptions{})
	wait.For(t, "alice's first offer", func() bool {
		alice.mu.Lock()
		defer alice.mu.Unlock()
		return alice.offers == 1
	})
	joinClient(t, r, "carol", clientOptions{})
	joinClient(t, r, "dave", clientOptions{})

	p := alice.peer
	p.mu.Lock()
	inFlight, queued := p.offerInFlight, len(p.ops)
	p.mu.Unlock()
	if !inFlight || queued != 2 {
		t.Fatalf("alice: offer in flight %v, %d changes queued; want true, 2", inFlight, queued)
	}
	if err := p.SetAnswer("v=0"); !errors.Is(err, ErrInvalidSDP) {
		t.Errorf("garbage answer: err = %v, want ErrInvalidSDP", err)
	}

	alice.answerHeld()
	alice.waitReceiving(t, 25, "bob", "carol", "dave")
	alice.mu.Lock()
	offers := append([]string(nil), alice.offerSDPs...)
	alice.mu.Unlock()
	if len(offers) != 2 {
		t.Fatalf("alice got %d offers, want 2", len(offers))
	}
	for i, o := range offers {
		if !strings.Contains(o, "opus/48000/2") || strings.Contains(o, "red/") || strings.Contains(o, "PCMU") {
			t.Errorf("offer %d is not Opus only:\n%s", i, o)
		}
		if strings.Count(o, "a=sendonly") != strings.Count(o, "a=msid:") {
			t.Errorf("offer %d: every track should be on a sendonly m-line:\n%s", i, o)
		}
	}
	if !strings.Contains(offers[0], "msid:bob audio-bob") || strings.Contains(offers[0], "msid:carol") {
		t.Errorf("first offer should add bob only:\n%s", offers[0])
	}
	for _, id := range []string{"bob", "carol", "dave"} {
		if !strings.Contains(offers[1], "msid:"+id+" audio-"+id) {
			t.Errorf("second offer lacks %s:\n%s", id, offers[1])
		}
	}
	if err := p.SetAnswer(offers[1]); !errors.Is(err, ErrNoOfferPending) {
		t.Errorf("answer with no offer pending: err = %v, want ErrNoOfferPending", err)
	}
}

// TestOnlyOpusNegotiated: answers and server offers carry Opus and the audio
// level extension, nothing else (no RED, no other codec).
func TestOnlyOpusNegotiated(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("codecs", nil)
	// A browser-like offer: Opus among RED, G722, PCMU, PCMA.
	c, offer := newClient(t, "alice", clientOptions{})
	offer = strings.Replace(offer, "a=rtpmap:109 opus/48000/2",
		"a=rtpmap:109 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 109/109\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000", 1)
	offer = strings.Replace(offer, "RTP/SAVPF 109", "RTP/SAVPF 109 63 9 0", 1)
	if !strings.Contains(offer, "red/48000/2") || !strings.Contains(offer, "RTP/SAVPF 109 63 9 0") {
		t.Fatalf("offer not rewritten:\n%s", offer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	p, answer, err := r.Join(ctx, "alice", offer, c)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, bad := range []string{"red/", "G722", "PCMU", "PCMA", "VP8", "H264"} {
		if strings.Contains(answer, bad) {
			t.Errorf("answer contains %s:\n%s", bad, answer)
		}
	}
	// In-band FEC stays on, so a receiver can conceal a loss nobody repaired.
	for _, want := range []string{"opus/48000/2", "useinbandfec=1", "ssrc-audio-level", "a=recvonly", "nack"} {
		if !strings.Contains(answer, want) {
			t.Errorf("answer lacks %s:\n%s", want, answer)
		}
	}
}

// TestFailedWhenClientGoes: a client that closes its PeerConnection without
// leaving is reported through Failed and dropped from the room.
func TestFailedWhenClientGoes(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("fail", nil)
	alice := joinClient(t, r, "alice", clientOptions{})
	bob := joinClient(t, r, "bob", clientOptions{})
	alice.waitReceiving(t, 10, "bob")
	bob.close()
	wait.For(t, "bob's handler to get Failed", func() bool {
		bob.mu.Lock()
		defer bob.mu.Unlock()
		return len(bob.failures) == 1
	})
	wait.For(t, "alice to lose bob's track", func() bool {
		_, ended, _ := alice.snapshot("bob")
		return ended
	})
	wait.For(t, "bob to leave the room", func() bool { return e.Stats().Peers == 1 })
	if err := bob.peer.SetAnswer("v=0"); !errors.Is(err, ErrClosed) {
		t.Errorf("SetAnswer on a failed peer: err = %v, want ErrClosed", err)
	}
}

// TestICETCP: a client that can only use TCP reaches the relay through the
// ICE-TCP mux and talks with a UDP client.
func TestICETCP(t *testing.T) {
	e := newTestEngine(t)
	if e.TCPAddr() == nil {
		t.Fatal("TCP disabled")
	}
	r := e.NewRoom("tcp", nil)
	alice := joinClient(t, r, "alice", clientOptions{})
	bob := joinClient(t, r, "bob", clientOptions{tcpOnly: true})
	alice.waitReceiving(t, 25, "bob")
	bob.waitReceiving(t, 25, "alice")
	checkStream(t, alice, "bob")
	checkStream(t, bob, "alice")
	pair, err := bob.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("bob: no selected pair: %v", err)
	}
	if pair.Remote.Protocol != webrtc.ICEProtocolTCP {
		t.Errorf("bob's path uses %s, want tcp", pair.Remote.Protocol)
	}
}

// TestCloseReleasesEverything: Room.Close and Engine.Close close every peer
// and stop every goroutine the package started.
func TestCloseReleasesEverything(t *testing.T) {
	base := runtime.NumGoroutine()
	e, err := NewEngine(Config{ListenIP: "127.0.0.1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	r1 := e.NewRoom("one", nil)
	r2 := e.NewRoom("two", nil)
	var clients []*client
	for _, id := range []string{"a", "b", "c"} {
		clients = append(clients, joinClient(t, r1, id, clientOptions{}))
	}
	for _, id := range []string{"x", "y"} {
		clients = append(clients, joinClient(t, r2, id, clientOptions{}))
	}
	clients[0].waitReceiving(t, 10, "b", "c")
	clients[3].waitReceiving(t, 10, "y")

	if err := r1.Close(); err != nil {
		t.Errorf("Room.Close: %v", err)
	}
	if s := e.Stats(); s.Rooms != 1 || s.Peers != 2 {
		t.Errorf("after Room.Close: rooms %d peers %d, want 1 2", s.Rooms, s.Peers)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	late, offer := newClient(t, "late", clientOptions{})
	if _, _, err := r1.Join(ctx, "late", offer, late); !errors.Is(err, ErrClosed) {
		t.Errorf("Join on a closed room: err = %v, want ErrClosed", err)
	}
	clients = append(clients, late)

	if err := e.Close(); err != nil {
		t.Errorf("Engine.Close: %v", err)
	}
	if s := e.Stats(); s.Rooms != 0 || s.Peers != 0 || s.Tracks != 0 {
		t.Errorf("after Engine.Close: %+v", s)
	}
	// The ports are free again.
	if c, err := net.ListenUDP("udp", e.UDPAddr().(*net.UDPAddr)); err != nil {
		t.Errorf("UDP port still held: %v", err)
	} else {
		c.Close()
	}
	if l, err := net.ListenTCP("tcp", e.TCPAddr().(*net.TCPAddr)); err != nil {
		t.Errorf("TCP port still held: %v", err)
	} else {
		l.Close()
	}
	for _, c := range clients {
		c.close()
		c.mu.Lock()
		if len(c.failures) != 0 {
			t.Errorf("%s: Failed called after a deliberate close: %v", c.id, c.failures)
		}
		c.mu.Unlock()
	}
	// pion's clients wind down asynchronously; the engine's goroutines are
	// already gone (Close waited for them).
	deadline := time.Now().Add(wait.Timeout)
	for runtime.NumGoroutine() > base+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, baseline %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPublicIPsReplaceHostCandidates: with PublicIPs (1:1 NAT), the answer
// advertises the public address on the mux ports instead of the local one.
func TestPublicIPsReplaceHostCandidates(t *testing.T) {
	// 127.0.0.2 stands for the public address: still loopback, so nothing
	// leaves the machine even if a client tried it.
	e, err := NewEngine(Config{ListenIP: "127.0.0.1", PublicIPs: []string{"127.0.0.2"}, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	r := e.NewRoom("nat", nil)
	c, offer := newClient(t, "alice", clientOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	_, answer, err := r.Join(ctx, "alice", offer, c)
	if err != nil {
		t.Fatal(err)
	}
	udpPort := e.UDPAddr().(*net.UDPAddr).Port
	tcpPort := e.TCPAddr().(*net.TCPAddr).Port
	for _, want := range []string{
		fmt.Sprintf("127.0.0.2 %d typ host", udpPort),
		fmt.Sprintf("127.0.0.2 %d typ host tcptype passive", tcpPort),
	} {
		if !strings.Contains(answer, want) {
			t.Errorf("answer lacks candidate %q:\n%s", want, answer)
		}
	}
	if strings.Contains(answer, "127.0.0.1 ") {
		t.Errorf("answer still advertises the local address:\n%s", answer)
	}
	if _, err := NewEngine(Config{ListenIP: "127.0.0.1", PublicIPs: []string{"not-an-ip"}}); err == nil {
		t.Error("NewEngine accepted a public IP that is not an IP")
	}
}

// TestFailedWhenICEFails: a client whose network vanishes (no DTLS close,
// no more packets) is reported failed once ICE gives up, and dropped.
func TestFailedWhenICEFails(t *testing.T) {
	e, err := NewEngine(Config{ListenIP: "127.0.0.1", Logger: testLogger(),
		ICEDisconnectedTimeout: time.Second, ICEFailedTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	r := e.NewRoom("ice", nil)
	alice := joinClient(t, r, "alice", clientOptions{})
	bob := joinClient(t, r, "bob", clientOptions{})
	alice.waitReceiving(t, 10, "bob")
	bob.waitReceiving(t, 10, "alice")

	// Stop bob's ICE agent under the PeerConnection: his packets stop
	// without any goodbye.
	if err := bob.pc.SCTP().Transport().ICETransport().Stop(); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "bob's handler to get Failed", func() bool {
		bob.mu.Lock()
		defer bob.mu.Unlock()
		return len(bob.failures) == 1
	})
	bob.mu.Lock()
	reason := bob.failures[0]
	silent := bob.connectivity
	bob.mu.Unlock()
	if reason != "ICE failed" && reason != "peer connection failed" {
		t.Errorf("Failed(%q): want an ICE failure", reason)
	}
	// Signaling hears that bob fell silent before he is given up.
	if len(silent) != 1 || silent[0] {
		t.Errorf("Connectivity reports %v, want [false]", silent)
	}
	wait.For(t, "alice to lose bob's track", func() bool {
		_, ended, _ := alice.snapshot("bob")
		return ended
	})
	// The failed peer is counted out when its close finishes, which may
	// come after alice's renegotiation.
	wait.For(t, "one peer left in the engine", func() bool { return e.Stats().Peers == 1 })
}

// TestConcurrentJoinsAndLeaves: participants joining and leaving at the same
// time all end up hearing exactly the ones who stayed.
func TestConcurrentJoinsAndLeaves(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("crowd", nil)
	ids := []string{"p0", "p1", "p2", "p3", "p4", "p5"}
	clients := make([]*client, len(ids))
	offers := make([]string, len(ids))
	for i, id := range ids {
		clients[i], offers[i] = newClient(t, id, clientOptions{})
	}
	errs := make(chan error, len(ids))
	for i := range ids {
		go func() { errs <- clients[i].tryJoin(r, offers[i]) }()
	}
	for range ids {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range clients {
		var others []string
		for j, id := range ids {
			if j != i {
				others = append(others, id)
			}
		}
		c.waitReceiving(t, 10, others...)
	}

	leaving, staying := clients[:3], clients[3:]
	done := make(chan struct{})
	for _, c := range leaving {
		go func() {
			defer func() { done <- struct{}{} }()
			c.leave()
		}()
	}
	for range leaving {
		<-done
	}
	for _, c := range staying {
		for _, l := range leaving {
			wait.For(t, c.id+" to lose "+l.id, func() bool {
				_, ended, _ := c.snapshot(l.id)
				return ended
			})
		}
		for _, o := range staying {
			if o != c {
				pk, _, _ := c.snapshot(o.id)
				c.waitReceiving(t, len(pk)+10, o.id)
				checkStream(t, c, o.id)
			}
		}
		c.mu.Lock()
		if len(c.answerErrs) > 0 || len(c.failures) > 0 {
			t.Errorf("%s: answer errors %v, failures %v", c.id, c.answerErrs, c.failures)
		}
		c.mu.Unlock()
	}
	wait.For(t, "3 peers and 3 tracks", func() bool {
		s := e.Stats()
		return s.Peers == 3 && s.Tracks == 3
	})
}

// TestAddCandidate: remote trickled candidates are applied; the end marker
// is accepted; garbage is an error, not a crash.
func TestAddCandidate(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("trickle", nil)
	alice := joinClient(t, r, "alice", clientOptions{})
	var line string
	for l := range strings.SplitSeq(alice.pc.LocalDescription().SDP, "\r\n") {
		if strings.HasPrefix(l, "a=candidate:") {
			line = strings.TrimPrefix(l, "a=")
			break
		}
	}
	if line == "" {
		t.Fatal("client offer has no candidate")
	}
	mid := "0"
	if err := alice.peer.AddCandidate(api.ICECandidate{Candidate: line, SDPMid: &mid}); err != nil {
		t.Errorf("valid candidate: %v", err)
	}
	if err := alice.peer.AddCandidate(api.ICECandidate{}); err != nil {
		t.Errorf("end of candidates: %v", err)
	}
	if err := alice.peer.AddCandidate(api.ICECandidate{Candidate: "candidate:nonsense", SDPMid: &mid}); err == nil {
		t.Error("garbage candidate accepted")
	}
	// Candidates that do not belong to this session, as a client on
	// another stack may send them.
	ufrag := regexp.MustCompile(`a=ice-ufrag:(\S+)`).FindStringSubmatch(alice.pc.LocalDescription().SDP)[1]
	if err := alice.peer.AddCandidate(api.ICECandidate{Candidate: line, SDPMid: &mid, UsernameFragment: &ufrag}); err != nil {
		t.Errorf("valid candidate with its usernameFragment: %v", err)
	}
	wrongMid, stray := "7", ufrag+"\u00a0"
	for name, c := range map[string]api.ICECandidate{
		"wrong sdpMid":           {Candidate: line, SDPMid: &wrongMid},
		"no sdpMid nor index":    {Candidate: line},
		"stray usernameFragment": {Candidate: line, SDPMid: &mid, UsernameFragment: &stray},
	} {
		if err := alice.peer.AddCandidate(c); !errors.Is(err, ErrCandidate) {
			t.Errorf("%s: err = %v, want ErrCandidate", name, err)
		}
	}
	alice.peer.Close()
	if err := alice.peer.AddCandidate(api.ICECandidate{Candidate: line, SDPMid: &mid}); !errors.Is(err, ErrClosed) {
		t.Errorf("after close: err = %v, want ErrClosed", err)
	}
}

// TestClientOfferRestartsICE: a client offer with new ICE credentials gets
// an answer with new server credentials and candidates; media goes on over
// the same PeerConnection and DTLS session. A client offer that crosses
// the server's own is refused as a collision, and one that changes the
// media is refused as invalid.
func TestClientOfferRestartsICE(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("restart", nil)
	alice := joinClient(t, r, "alice", clientOptions{holdOffers: true})
	bob := joinClient(t, r, "bob", clientOptions{})
	bob.waitReceiving(t, 10, "alice")
	wait.For(t, "alice's offer held", func() bool {
		alice.mu.Lock()
		defer alice.mu.Unlock()
		return len(alice.held) == 1
	})
	restartOffer := func(c *client) string {
		t.Helper()
		offer, err := c.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
		if err != nil {
			t.Fatal(err)
		}
		gathered := webrtc.GatheringCompletePromise(c.pc)
		if err := c.pc.SetLocalDescription(offer); err != nil {
			t.Fatal(err)
		}
		<-gathered
		return c.pc.LocalDescription().SDP
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	if err := alice.peer.AnswerOffer(ctx, "v=0\r\n"); !errors.Is(err, ErrOfferCollision) {
		t.Errorf("alice's offer while the server's awaits her answer: err = %v, want ErrOfferCollision", err)
	}
	alice.answerHeld()
	bob.waitReceiving(t, 10, "alice")

	oldUfrag := iceUfrag(t, bob.pc.RemoteDescription().SDP)
	before, _, _ := alice.snapshot("bob")
	if err := bob.peer.AnswerOffer(ctx, restartOffer(bob)); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "bob's answer", func() bool {
		bob.mu.Lock()
		defer bob.mu.Unlock()
		return bob.answers == 1
	})
	bob.mu.Lock()
	errs := bob.answerErrs
	bob.mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("applying the server's answer: %v", errs)
	}
	if newUfrag := iceUfrag(t, bob.pc.RemoteDescription().SDP); newUfrag == oldUfrag {
		t.Errorf("the server kept its ICE ufrag %q across the restart", oldUfrag)
	}
	if !strings.Contains(bob.pc.RemoteDescription().SDP, "a=candidate:") {
		t.Error("the answer to the restart carries no candidate")
	}
	alice.waitReceiving(t, len(before)+25, "bob")
	bob.waitReceiving(t, 10, "alice")

	// Dropping an m-line is not an ICE restart.
	offer := restartOffer(alice)
	if i := strings.Index(offer, "m=audio"); i >= 0 {
		if j := strings.Index(offer[i+1:], "m=audio"); j >= 0 {
			offer = offer[:i+1+j]
		}
	}
	if err := alice.peer.AnswerOffer(ctx, offer); !errors.Is(err, ErrInvalidSDP) {
		t.Errorf("offer without the server's m-line: err = %v, want ErrInvalidSDP", err)
	}
}

func iceUfrag(t *testing.T, sdp string) string {
	t.Helper()
	for _, line := range strings.Split(sdp, "\r\n") {
		if u, ok := strings.CutPrefix(line, "a=ice-ufrag:"); ok {
			return u
		}
	}
	t.Fatalf("no ice-ufrag in\n%s", sdp)
	return ""
}
