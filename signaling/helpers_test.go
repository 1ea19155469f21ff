package signaling

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/loopback"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/media"
	"github.com/sotto-voice/sotto/token"
)

var testSecret = []byte("test-secret-0123456789abcdef")

type testServer struct {
	t   *testing.T
	srv *Server
	ts  *httptest.Server
}

// newTestServer runs a Server with a real media engine on loopback.
func newTestServer(t *testing.T, configure func(*Config)) *testServer {
	t.Helper()
	return newTestServerOn(t, nil, media.Config{}, configure)
}

// newTestServerOn is newTestServer serving on ln, if not nil (a server
// that must know its URL before it starts: a cluster node), with the media
// engine's ICE timeouts taken from mc.
func newTestServerOn(t *testing.T, ln net.Listener, mc media.Config, configure func(*Config)) *testServer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	engine, err := media.NewEngine(media.Config{ListenIP: "127.0.0.1", UDPPort: 0, TCPPort: -1, Logger: log,
		ICEDisconnectedTimeout: mc.ICEDisconnectedTimeout, ICEFailedTimeout: mc.ICEFailedTimeout})
	if err != nil {
		t.Fatalf("media engine: %v", err)
	}
	cfg := Config{Secret: testSecret, Media: engine, Logger: log}
	if configure != nil {
		configure(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewUnstartedServer(srv)
	if ln != nil {
		ts.Listener.Close()
		ts.Listener = ln
	}
	ts.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		ts.Close()
		closed := make(chan error, 1)
		go func() { closed <- engine.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("engine close: %v", err)
			}
		case <-time.After(wait.Timeout):
			// Fail here rather than hang the whole package.
			t.Errorf("media engine did not close within %v", wait.Timeout)
		}
	})
	return &testServer{t: t, srv: srv, ts: ts}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// mintToken returns a token admitting identity to room for an hour.
func mintToken(t *testing.T, room, identity string) string {
	t.Helper()
	tok, err := token.Mint(testSecret, token.Claims{Room: room, Identity: identity, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// do sends a request and returns the status and body.
func (s *testServer) do(method, path, auth string, body []byte) (int, []byte) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// expectError checks an HTTP error answer's status and code.
func (s *testServer) expectError(status int, body []byte, wantStatus int, code api.ErrorCode) {
	s.t.Helper()
	var e api.ErrorBody
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
		s.t.Fatalf("status %d, body %q is not an error body", status, body)
	}
	if status != wantStatus || e.Error.Code != code {
		s.t.Fatalf("got %d %s (%s), want %d %s", status, e.Error.Code, e.Error.Message, wantStatus, code)
	}
	if e.Error.Message == "" {
		s.t.Errorf("error %s has no message", code)
	}
}

// peer is a real pion client PeerConnection sending one audio track.
type peer struct {
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticSample
}

// newPeer builds a loopback-only client offering audio with codec
// (webrtc.MimeTypeOpus or another mime type).
func newPeer(t *testing.T, mime string) *peer {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if mime != webrtc.MimeTypeOpus {
		me = &webrtc.MediaEngine{}
		err := me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 8000, Channels: 1},
			PayloadType:        0,
		}, webrtc.RTPCodecTypeAudio)
		if err != nil {
			t.Fatal(err)
		}
	}
	pc, err := loopback.API(me).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	clockRate := uint32(8000)
	if mime == webrtc.MimeTypeOpus {
		clockRate = 48000
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: mime, ClockRate: clockRate}, "audio", "mic")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	return &peer{pc: pc, track: track}
}

// offer returns the complete (non-trickle) offer SDP.
func (p *peer) offer(t *testing.T) string {
	t.Helper()
	ctx, cancel := contextWithWait()
	defer cancel()
	sdp, err := loopback.Offer(ctx, p.pc)
	if err != nil {
		t.Fatal(err)
	}
	return sdp
}

// answer applies a server offer and returns the client's answer SDP.
func (p *peer) answer(t *testing.T, offer string) string {
	t.Helper()
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatalf("apply server offer: %v", err)
	}
	ans, err := p.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	return ans.SDP
}

// join joins room as identity with a fresh Opus peer and applies the answer.
func (s *testServer) join(room, identity string) (api.JoinResponse, *peer) {
	s.t.Helper()
	p := newPeer(s.t, webrtc.MimeTypeOpus)
	ctx, cancel := contextWithWait()
	defer cancel()
	jr, err := loopback.Join(ctx, p.pc, s.ts.URL, room, mintToken(s.t, room, identity))
	if err != nil {
		s.t.Fatalf("%s joins %s: %v", identity, room, err)
	}
	return jr, p
}

// events is a client of one event stream.
type events struct {
	t    *testing.T
	conn *websocket.Conn
}

func (s *testServer) connect(jr api.JoinResponse) *events {
	s.t.Helper()
	ev := s.connectRaw(jr)
	w := ev.expect(api.TypeWelcome)
	var welcome api.Welcome
	ev.decode(w, &welcome)
	if welcome.ParticipantID != jr.ParticipantID {
		s.t.Fatalf("welcome for %q, want %q", welcome.ParticipantID, jr.ParticipantID)
	}
	return ev
}

func (s *testServer) connectRaw(jr api.JoinResponse) *events {
	s.t.Helper()
	ctx, cancel := contextWithWait()
	defer cancel()
	conn, err := loopback.Events(ctx, s.ts.URL, jr)
	if err != nil {
		s.t.Fatal(err)
	}
	conn.SetReadLimit(1 << 20)
	s.t.Cleanup(func() { _ = conn.CloseNow() })
	return &events{t: s.t, conn: conn}
}

func (e *events) send(v any) {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	e.sendRaw(b)
}

func (e *events) sendRaw(b []byte) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	if err := e.conn.Write(ctx, websocket.MessageText, b); err != nil {
		e.t.Fatalf("write: %v", err)
	}
}

// next reads one message.
func (e *events) next() (api.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	_, b, err := e.conn.Read(ctx)
	if err != nil {
		return api.Message{}, err
	}
	var m api.Message
	if err := json.Unmarshal(b, &m); err != nil {
		e.t.Fatalf("server sent non-JSON %q", b)
	}
	return m, nil
}

// noise are messages media may send at any time; expect skips them.
var noise = map[string]bool{api.TypeOffer: true, api.TypeCandidate: true, api.TypeSpeaking: true}

// expect reads until a message of type typ, failing on anything else that
// is not noise.
func (e *events) expect(typ string) api.Message {
	e.t.Helper()
	return e.expectAny(typ)
}

// expectAny reads until a message of one of types, failing on anything else
// that is not noise.
func (e *events) expectAny(types ...string) api.Message {
	e.t.Helper()
	for {
		m, err := e.next()
		if err != nil {
			e.t.Fatalf("waiting for %q: %v", types, err)
		}
		if slices.Contains(types, m.Type) {
			return m
		}
		if !noise[m.Type] {
			e.t.Fatalf("waiting for %q, got %s", types, m.Raw)
		}
	}
}

func (e *events) decode(m api.Message, v any) {
	e.t.Helper()
	if err := json.Unmarshal(m.Raw, v); err != nil {
		e.t.Fatalf("decode %s: %v", m.Raw, err)
	}
}

// expectError waits for an error event with code and returns it.
func (e *events) expectError(code api.ErrorCode) api.ErrorEvent {
	e.t.Helper()
	var ev api.ErrorEvent
	e.decode(e.expect(api.TypeError), &ev)
	if ev.Error.Code != code {
		e.t.Fatalf("error %s (%s), want %s", ev.Error.Code, ev.Error.Message, code)
	}
	return ev
}

// expectJoined waits for a joined event about id.
func (e *events) expectJoined(id string) {
	e.t.Helper()
	var j api.Joined
	e.decode(e.expect(api.TypeJoined), &j)
	if j.Participant.ID != id {
		e.t.Fatalf("joined %s, want %s", j.Participant.ID, id)
	}
}

// expectLeft waits for a left event about id with reason.
func (e *events) expectLeft(id, reason string) {
	e.t.Helper()
	var l api.Left
	e.decode(e.expect(api.TypeLeft), &l)
	if l.Participant.ID != id || l.Reason != reason {
		e.t.Fatalf("left %s (%s), want %s (%s)", l.Participant.ID, l.Reason, id, reason)
	}
}

// expectClosed waits for closed with reason, skipping messages of the
// types in skip, and then for the end of the stream. It returns the closed
// message.
func (e *events) expectClosed(reason string, skip ...string) api.Closed {
	e.t.Helper()
	m := e.expectAny(append(skip, api.TypeClosed)...)
	for m.Type != api.TypeClosed {
		m = e.expectAny(append(skip, api.TypeClosed)...)
	}
	var c api.Closed
	e.decode(m, &c)
	if c.Reason != reason {
		e.t.Fatalf("closed %q, want %q", c.Reason, reason)
	}
	for {
		m, err := e.next()
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				e.t.Fatalf("stream ended with %v, want normal closure", err)
			}
			return c
		}
		if !noise[m.Type] {
			e.t.Fatalf("message after closed: %s", m.Raw)
		}
	}
}

// envelope builds a client envelope.
func envelope(to string, id uint64, data []byte) api.Envelope {
	return api.Envelope{Type: api.TypeEnvelope, To: to, ID: id, Data: data}
}

func contextWithWait() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), wait.Timeout)
}

// waitDisconnected waits until the server has noticed that participant id
// lost its event stream.
func (s *testServer) waitDisconnected(id string) {
	s.t.Helper()
	wait.For(s.t, "the server to drop "+id+"'s event stream", func() bool {
		s.srv.mu.Lock()
		defer s.srv.mu.Unlock()
		for _, rm := range s.srv.rooms {
			if p := rm.participants[id]; p != nil && p.stream != nil {
				return false
			}
		}
		return true
	})
}
