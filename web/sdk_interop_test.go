package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/client"
	"github.com/sotto-voice/sotto/e2ee"
	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/wait"
)

// redeem knocks with an invite as a Go SDK guest would, has the host page
// let it in, and returns the guest's token.
func redeem(t *testing.T, srv *callServer, host *page, invite, name string) api.RedeemInviteResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	type result struct {
		adm *client.Admission
		err error
	}
	done := make(chan result, 1)
	go func() {
		adm, err := client.Knock(ctx, srv.URL, invite, name, nil)
		done <- result{adm, err}
	}()
	host.letIn(name)
	r := <-done
	if r.err != nil {
		t.Fatalf("%s knocks: %v", name, r.err)
	}
	return api.RedeemInviteResponse{Room: r.adm.Room, Identity: r.adm.Identity, Token: r.adm.Token, Inviter: r.adm.Inviter}
}

// goCaller is a Go SDK participant that checks every frame it receives is
// a valid Opus packet and, if echo is set, sends it back.
type goCaller struct {
	t    *testing.T
	call *client.Call
	echo bool

	mu       sync.Mutex
	frames   map[string]int // valid Opus frames per publisher
	invalid  []string
	enc      map[string]bool // publishers whose key is in place
	speakers map[string]bool
	muted    map[string]bool // as each participant last said
}

func joinGo(t *testing.T, srv *callServer, token string, echo bool) *goCaller {
	t.Helper()
	return joinGoAs(t, srv, token, echo, nil)
}

// joinGoAs joins with the device identity id (nil: a fresh one).
func joinGoAs(t *testing.T, srv *callServer, token string, echo bool, id *e2ee.Identity) *goCaller {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	call, err := client.Join(ctx, srv.URL, token, &client.Options{
		IPFilter: func(ip net.IP) bool { return ip.IsLoopback() },
		Identity: id,
	})
	if err != nil {
		t.Fatalf("Go caller join: %v", err)
	}
	g := &goCaller{t: t, call: call, echo: echo, frames: map[string]int{}, enc: map[string]bool{}, speakers: map[string]bool{}, muted: map[string]bool{}}
	t.Cleanup(func() { _ = call.Leave() })
	go g.readFrames()
	go g.readEvents()
	return g
}

func (g *goCaller) readFrames() {
	for f := range g.call.Frames() {
		d, err := opusDuration(f.Data)
		g.mu.Lock()
		if err != nil {
			if len(g.invalid) < 5 {
				g.invalid = append(g.invalid, fmt.Sprintf("from %s: %v (% x)", f.From.ID, err, f.Data[:min(len(f.Data), 16)]))
			}
		} else {
			g.frames[f.From.ID]++
		}
		g.mu.Unlock()
		if err == nil && g.echo {
			// Send the browser's own voice back: the browser then hears
			// audio that the Go side encrypted.
			if err := g.call.WriteFrame(f.Data, d); err != nil && !errors.Is(err, client.ErrClosed) {
				g.t.Logf("echo: %v", err)
			}
		}
	}
}

func (g *goCaller) readEvents() {
	for ev := range g.call.Events() {
		switch e := ev.(type) {
		case client.PeerEncrypted:
			g.mu.Lock()
			g.enc[e.Participant.ID] = true
			g.mu.Unlock()
		case client.IdentityChanged:
			g.t.Errorf("Go caller: identity changed for %s", e.Participant.Identity)
		case client.MuteChanged:
			g.mu.Lock()
			g.muted[e.Participant.ID] = e.Muted
			g.mu.Unlock()
		}
	}
}

// waitMuted waits until participant id said it is muted (or not).
func (g *goCaller) waitMuted(id string, want bool) {
	g.t.Helper()
	wait.For(g.t, fmt.Sprintf("the Go caller to see %s muted=%v", id, want), func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		m, ok := g.muted[id]
		return ok && m == want
	})
}

func (g *goCaller) framesFrom(id string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.frames[id]
}

func (g *goCaller) encrypted(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.enc[id]
}

func (g *goCaller) checkClean(name string) {
	g.t.Helper()
	g.mu.Lock()
	invalid := g.invalid
	g.mu.Unlock()
	if len(invalid) > 0 {
		g.t.Errorf("%s received frames that are not valid Opus: %v", name, invalid)
	}
	st := g.call.Stats()
	if f := st.DecryptFailures(); f != 0 {
		g.t.Errorf("%s: %d frames failed to decrypt: %v", name, f, st.Dropped)
	}
}

// TestBrowserGoInterop: a browser and a Go SDK caller in one call hear each
// other through end-to-end encryption. The Go side decrypts the browser's
// frames to valid Opus (RFC 6716 §3.4) and echoes them; the browser
// decrypts them and plays audio with energy. Both show the same safety
// number. A third (Go) participant joins and leaves; both sides rekey and
// keep decrypting without a failure.
func TestBrowserGoInterop(t *testing.T) {
	srv := startCallServer(t)
	alice := openPage(t, "alice", browsertest.WriteToneWAV(t, 10*time.Second))
	started := alice.startCall(srv, "Alice")
	invite := started.InviteLink[len(srv.URL+"/join#invite="):]

	bobToken := redeem(t, srv, alice, invite, "GoBob")
	bob := joinGo(t, srv, bobToken.Token, true)
	bobID := bob.call.ID()
	aliceID := started.SelfID

	// Keys in place both ways, and the same safety number on both sides.
	as := alice.waitEncrypted(1)
	wait.For(t, "the Go caller to get the browser's key", func() bool { return bob.encrypted(aliceID) })
	goSN, err := bob.call.SafetyNumber(aliceID)
	if err != nil {
		t.Fatal(err)
	}
	if pageSN := peerSafetyNumber(t, as, bobID); pageSN != goSN {
		t.Fatalf("safety numbers differ: browser %q, Go %q", pageSN, goSN)
	}

	// Browser -> Go: valid Opus after decryption. Go -> browser: the echo
	// decrypts in the page and carries energy.
	wait.For(t, "valid Opus frames from the browser", func() bool { return bob.framesFrom(aliceID) > 100 })
	alice.waitStats("the Go caller's frames decrypted, with energy", func(s pageStats) bool {
		in := s.Inbound[bobID]
		return s.Decrypt != nil && s.Decrypt.ByParticipant[bobID].Decrypted > 100 && in.Energy > 0
	})

	// A third party joins and leaves: everyone rekeys.
	bobBefore := bob.call.Stats()
	carolToken := redeem(t, srv, alice, invite, "GoCarol")
	carol := joinGo(t, srv, carolToken.Token, false)
	alice.waitEncrypted(2)
	wait.For(t, "Carol to decrypt the browser", func() bool { return carol.framesFrom(aliceID) > 20 })
	wait.For(t, "Carol to decrypt Bob", func() bool { return carol.framesFrom(bobID) > 20 })
	carol.checkClean("Carol")
	if err := carol.call.Leave(); err != nil {
		t.Fatalf("Carol leave: %v", err)
	}
	alice.waitState("Carol gone", func(s pageState) bool { return len(s.peers()) == 1 })

	// Bob installs the browser's fresh chain, and sends under his own.
	wait.For(t, "Bob to rekey and receive the browser's new key", func() bool {
		st := bob.call.Stats()
		return st.Rekeys >= bobBefore.Rekeys+2 && st.KeysReceived > bobBefore.KeysReceived
	})
	framesBefore := bob.framesFrom(aliceID)
	pageBefore := alice.stats().Decrypt.ByParticipant[bobID].Decrypted
	wait.For(t, "audio to keep flowing both ways after the rekey", func() bool {
		return bob.framesFrom(aliceID) > framesBefore+100 && alice.stats().Decrypt.ByParticipant[bobID].Decrypted > pageBefore+100
	})

	bob.checkClean("Bob")
	if st := alice.stats(); st.failures() != 0 {
		b, _ := json.Marshal(st)
		t.Errorf("the browser failed to decrypt %d frames: %s", st.failures(), b)
	}
	t.Logf("Bob: %+v", bob.call.Stats())
}

// opusDuration checks that p is a well-formed Opus packet (RFC 6716
// §3.4, requirements R1-R7) and returns the audio duration it covers.
func opusDuration(p []byte) (time.Duration, error) {
	if len(p) < 1 {
		return 0, errors.New("R1: empty packet")
	}
	toc := p[0]
	frameDur := opusFrameDuration(toc >> 3)
	rest := p[1:]
	const maxFrame = 1275
	switch toc & 3 {
	case 0:
		if len(rest) > maxFrame {
			return 0, errors.New("R2: frame longer than 1275 bytes")
		}
		return frameDur, nil
	case 1:
		if len(rest)%2 != 0 {
			return 0, errors.New("R3: code 1 packet with an odd payload")
		}
		if len(rest)/2 > maxFrame {
			return 0, errors.New("R2: frame longer than 1275 bytes")
		}
		return 2 * frameDur, nil
	case 2:
		n1, used, err := opusFrameLength(rest)
		if err != nil {
			return 0, fmt.Errorf("R4: %w", err)
		}
		if n1 > len(rest)-used || len(rest)-used-n1 > maxFrame {
			return 0, errors.New("R4: first frame longer than the packet")
		}
		return 2 * frameDur, nil
	}
	// Code 3: frame count byte, optional padding, CBR or VBR frames.
	if len(rest) < 1 {
		return 0, errors.New("R6/R7: code 3 packet without a frame count")
	}
	vbr, padded, m := rest[0]&0x80 != 0, rest[0]&0x40 != 0, int(rest[0]&0x3f)
	rest = rest[1:]
	if m == 0 || time.Duration(m)*frameDur > 120*time.Millisecond {
		return 0, fmt.Errorf("R5: %d frames of %v", m, frameDur)
	}
	padding := 0
	for padded {
		if len(rest) < 1 {
			return 0, errors.New("R6/R7: truncated padding length")
		}
		b := int(rest[0])
		rest = rest[1:]
		if b == 255 {
			padding += 254
		} else {
			padding += b
			padded = false
		}
	}
	if padding > len(rest) {
		return 0, errors.New("R6/R7: padding longer than the packet")
	}
	data := len(rest) - padding
	if !vbr {
		if data%m != 0 || data/m > maxFrame {
			return 0, errors.New("R6: CBR frames of unequal or excessive length")
		}
		return time.Duration(m) * frameDur, nil
	}
	total := 0
	for range m - 1 {
		n, used, err := opusFrameLength(rest)
		if err != nil {
			return 0, fmt.Errorf("R7: %w", err)
		}
		rest = rest[used:]
		data -= used
		total += n
		if n > maxFrame {
			return 0, errors.New("R7: frame longer than 1275 bytes")
		}
	}
	if total > data || data-total > maxFrame {
		return 0, errors.New("R7: frame lengths exceed the packet")
	}
	return time.Duration(m) * frameDur, nil
}

// opusFrameLength decodes a one- or two-byte frame length (§3.2.1).
func opusFrameLength(b []byte) (n, used int, err error) {
	if len(b) < 1 {
		return 0, 0, errors.New("missing frame length")
	}
	if b[0] < 252 {
		return int(b[0]), 1, nil
	}
	if len(b) < 2 {
		return 0, 0, errors.New("truncated frame length")
	}
	return int(b[0]) + 4*int(b[1]), 2, nil
}

// opusFrameDuration is the frame size of a TOC configuration (Table 2).
func opusFrameDuration(config byte) time.Duration {
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		return [4]time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 60 * time.Millisecond}[config%4]
	case config < 16: // Hybrid: 10, 20 ms
		return [2]time.Duration{10 * time.Millisecond, 20 * time.Millisecond}[config%2]
	default: // CELT: 2.5, 5, 10, 20 ms
		return [4]time.Duration{2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}[config%4]
	}
}

func TestOpusDuration(t *testing.T) {
	for _, c := range []struct {
		name string
		p    []byte
		want time.Duration
		ok   bool
	}{
		{"empty", nil, 0, false},
		{"CELT 20ms silence", []byte{0xf8, 0xff, 0xfe}, 20 * time.Millisecond, true},
		{"SILK NB 10ms", []byte{0x00, 1, 2, 3}, 10 * time.Millisecond, true},
		{"code 1 even", []byte{0xf9, 1, 2, 3, 4}, 40 * time.Millisecond, true},
		{"code 1 odd", []byte{0xf9, 1, 2, 3}, 0, false},
		{"code 2", []byte{0xfa, 2, 1, 2, 3}, 40 * time.Millisecond, true},
		{"code 2 too long", []byte{0xfa, 9, 1, 2}, 0, false},
		{"code 3 CBR 3x20ms", []byte{0xfb, 0x03, 1, 2, 3}, 60 * time.Millisecond, true},
		{"code 3 no frames", []byte{0xfb, 0x00}, 0, false},
		{"code 3 over 120ms", []byte{0xfb, 0x07, 1, 2, 3, 4, 5, 6, 7}, 0, false},
		{"code 3 CBR uneven", []byte{0xfb, 0x02, 1, 2, 3}, 0, false},
		{"code 3 VBR", []byte{0xfb, 0x82, 1, 9, 8, 7}, 40 * time.Millisecond, true},
		{"code 3 VBR overrun", []byte{0xfb, 0x82, 5, 9}, 0, false},
		{"code 3 padded", []byte{0xfb, 0x41, 2, 1, 0, 0}, 20 * time.Millisecond, true},
		{"code 3 padding overrun", []byte{0xfb, 0x41, 9, 1}, 0, false},
		{"frame too long", append([]byte{0xf8}, make([]byte, 1276)...), 0, false},
	} {
		d, err := opusDuration(c.p)
		if (err == nil) != c.ok || (c.ok && d != c.want) {
			t.Errorf("%s: %v, %v; want %v ok=%v", c.name, d, err, c.want, c.ok)
		}
	}
}
