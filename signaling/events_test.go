package signaling

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/wait"
)

func TestEventStreamAuth(t *testing.T) {
	s := newTestServer(t, nil)
	a, _ := s.join("r1", "alice")
	for _, c := range []struct {
		name, query string
		status      int
		code        api.ErrorCode
	}{
		{"no session", "", 401, api.CodeUnauthorized},
		{"wrong session", "?session=" + strings.Repeat("A", 43), 401, api.CodeUnauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, b := s.do("GET", a.EventsURL+c.query, "", nil)
			s.expectError(status, b, c.status, c.code)
		})
	}
	status, b := s.do("GET", "/v1/rooms/r1/participants/p_nobody/events?session="+a.Session, "", nil)
	s.expectError(status, b, 404, api.CodeNotFound)
	// A foreign browser origin is refused; the participant can still connect.
	ctx, cancel := contextWithWait()
	defer cancel()
	u := "ws" + strings.TrimPrefix(s.ts.URL, "http") + a.EventsURL + "?session=" + a.Session
	_, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: map[string][]string{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("foreign origin: err %v, resp %v", err, resp)
	}
	s.connect(a)
}

func TestEventStreamJoinedAndLeaveMessage(t *testing.T) {
	s := newTestServer(t, nil)
	a, _ := s.join("r1", "alice")
	ea := s.connect(a)
	b, _ := s.join("r1", "bob")
	var j api.Joined
	ea.decode(ea.expect(api.TypeJoined), &j)
	if j.Participant != (api.Participant{ID: b.ParticipantID, Identity: "bob"}) {
		t.Fatalf("joined %+v", j.Participant)
	}
	eb := s.connectRaw(b)
	var w api.Welcome
	eb.decode(eb.expect(api.TypeWelcome), &w)
	if len(w.Participants) != 1 || w.Participants[0].ID != a.ParticipantID {
		t.Fatalf("welcome %+v", w)
	}
	eb.send(map[string]string{"type": api.TypeLeave})
	eb.expectClosed(api.ReasonLeft)
	ea.expectLeft(b.ParticipantID, api.ReasonLeft)
	// The room empties and disappears with its last participant.
	ea.send(map[string]string{"type": api.TypeLeave})
	ea.expectClosed(api.ReasonLeft)
	s.srv.mu.Lock()
	n := len(s.srv.rooms)
	s.srv.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d rooms after everyone left", n)
	}
}

func TestEnvelopeRelayInOrder(t *testing.T) {
	s := newTestServer(t, nil)
	a, _ := s.join("r1", "alice")
	b, _ := s.join("r1", "bob")
	ea := s.connect(a)
	eb := s.connect(b)
	const n = 300
	for i := 1; i <= n; i++ {
		ea.send(envelope(b.ParticipantID, uint64(i), []byte(fmt.Sprintf("payload %d \x00\xff", i))))
	}
	for i := 1; i <= n; i++ {
		var e api.Envelope
		eb.decode(eb.expect(api.TypeEnvelope), &e)
		want := []byte(fmt.Sprintf("payload %d \x00\xff", i))
		if e.ID != uint64(i) || e.From != a.ParticipantID || e.To != "" || !bytes.Equal(e.Data, want) {
			t.Fatalf("envelope %d: %+v", i, e)
		}
	}
}

func TestEnvelopeErrors(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxEnvelopeBytes = 1000 })
	a, _ := s.join("r1", "alice")
	b, _ := s.join("r1", "bob")
	x, _ := s.join("r2", "xavier")
	ea := s.connect(a)
	ea.expectJoined(b.ParticipantID)
	eb := s.connect(b)
	ex := s.connect(x)

	ea.send(envelope(x.ParticipantID, 7, []byte("hi")))
	if ev := ea.expectError(api.CodeUnknownRecipient); ev.Ref != 7 {
		t.Fatalf("ref %d, want 7", ev.Ref)
	}
	ea.send(envelope("p_nobody", 8, []byte("hi")))
	if ev := ea.expectError(api.CodeUnknownRecipient); ev.Ref != 8 {
		t.Fatalf("ref %d, want 8", ev.Ref)
	}
	ea.send(envelope(b.ParticipantID, 9, make([]byte, 1001)))
	if ev := ea.expectError(api.CodeEnvelopeTooLarge); ev.Ref != 9 {
		t.Fatalf("ref %d, want 9", ev.Ref)
	}
	// Only the good envelope arrives, at the right participant.
	ea.send(envelope(b.ParticipantID, 10, make([]byte, 1000)))
	var e api.Envelope
	eb.decode(eb.expect(api.TypeEnvelope), &e)
	if e.ID != 10 || len(e.Data) != 1000 {
		t.Fatalf("envelope %d with %d bytes", e.ID, len(e.Data))
	}
	ex.send(envelope(x.ParticipantID, 1, []byte("self")))
	ex.decode(ex.expect(api.TypeEnvelope), &e)
	if e.ID != 1 || e.From != x.ParticipantID {
		t.Fatalf("xavier got %+v", e)
	}
}

func TestRecipientBusy(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.QueueLength = 16; c.DropTimeout = wait.Timeout })
	a, _ := s.join("r1", "alice")
	b, _ := s.join("r1", "bob")
	ea := s.connect(a)
	ea.expectJoined(b.ParticipantID)
	// Bob never connects: his queue takes at most 8 envelopes (half of 16,
	// less any queued media offer); the sender is told about each refused
	// one. A message of unknown type marks the end of the answers.
	const n = 10
	for i := 1; i <= n; i++ {
		ea.send(envelope(b.ParticipantID, uint64(i), []byte("x")))
	}
	ea.send(map[string]string{"type": "marker"})
	var busy []uint64
	for {
		var ev api.ErrorEvent
		ea.decode(ea.expect(api.TypeError), &ev)
		if ev.Error.Code == api.CodeUnknownMessageType {
			break
		}
		if ev.Error.Code != api.CodeRecipientBusy {
			t.Fatalf("error %+v", ev)
		}
		busy = append(busy, ev.Ref)
	}
	accepted := n - len(busy)
	if accepted > 8 || accepted < 1 {
		t.Fatalf("%d envelopes accepted, refused %v", accepted, busy)
	}
	for i, ref := range busy {
		if ref != uint64(accepted+i+1) {
			t.Fatalf("refused %v after accepting %d", busy, accepted)
		}
	}
	// The accepted ones are delivered, in order, once Bob connects.
	eb := s.connect(b)
	for i := 1; i <= accepted; i++ {
		var e api.Envelope
		eb.decode(eb.expect(api.TypeEnvelope), &e)
		if e.ID != uint64(i) {
			t.Fatalf("envelope %d, want %d", e.ID, i)
		}
	}
}

func TestStreamBadMessages(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxMessageBytes = 4096 })
	a, _ := s.join("r1", "alice")
	b, _ := s.join("r1", "bob")
	ea := s.connect(a)
	ea.expectJoined(b.ParticipantID)
	eb := s.connect(b)

	ea.sendRaw([]byte(`{"type": "envelope", `))
	ea.expectError(api.CodeInvalidJSON)
	ea.sendRaw([]byte(`[1, 2]`))
	ea.expectError(api.CodeInvalidJSON)
	ea.sendRaw([]byte(`{"type": "dance"}`))
	ea.expectError(api.CodeUnknownMessageType)
	ea.sendRaw([]byte(`{"to": "x"}`))
	ea.expectError(api.CodeBadRequest)
	ea.sendRaw([]byte(`{"type": "envelope", "to": 5}`))
	ea.expectError(api.CodeBadRequest)
	ea.sendRaw([]byte(`{"type": "answer", "sdp": "garbage"}`))
	ea.expectError(api.CodeNegotiation)
	ea.sendRaw([]byte(`{"type": "envelope", "to": "` + b.ParticipantID + `", "data": "` + strings.Repeat("A", 5000) + `"}`))
	ea.expectError(api.CodeMessageTooLarge)
	ctx, cancel := contextWithWait()
	if err := ea.conn.Write(ctx, websocket.MessageBinary, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	cancel()
	ea.expectError(api.CodeInvalidJSON)

	// The stream is still open and the relay still works, both ways.
	ea.send(envelope(b.ParticipantID, 1, []byte("still here")))
	var e api.Envelope
	eb.decode(eb.expect(api.TypeEnvelope), &e)
	if string(e.Data) != "still here" {
		t.Fatalf("got %q", e.Data)
	}
	eb.send(envelope(a.ParticipantID, 2, []byte("me too")))
	ea.decode(ea.expect(api.TypeEnvelope), &e)
	if string(e.Data) != "me too" {
		t.Fatalf("got %q", e.Data)
	}
}

func TestDropWhenStreamGone(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.DropTimeout = time.Second })
	a, _ := s.join("r1", "alice")
	ea := s.connect(a)
	b, _ := s.join("r1", "bob")
	ea.expectJoined(b.ParticipantID)
	eb := s.connect(b)
	_ = eb.conn.CloseNow()
	ea.expectLeft(b.ParticipantID, api.ReasonDropped)

	// A participant that never connects is dropped too.
	c, _ := s.join("r1", "carol")
	ea.expectJoined(c.ParticipantID)
	ea.expectLeft(c.ParticipantID, api.ReasonDropped)
	status, body := s.do("GET", c.EventsURL+"?session="+c.Session, "", nil)
	s.expectError(status, body, 404, api.CodeNotFound)
}

func TestReconnectResumes(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.DropTimeout = wait.Timeout })
	a, _ := s.join("r1", "alice")
	b, _ := s.join("r1", "bob")
	ea := s.connect(a)
	eb := s.connect(b)
	_ = eb.conn.CloseNow()
	s.waitDisconnected(b.ParticipantID)
	// Sent while Bob is away: queued for his next connection.
	ea.send(envelope(b.ParticipantID, 1, []byte("while you were out")))
	eb = s.connect(b)
	var e api.Envelope
	eb.decode(eb.expect(api.TypeEnvelope), &e)
	if e.ID != 1 || string(e.Data) != "while you were out" {
		t.Fatalf("got %+v", e)
	}
	// A second connection replaces the first, which is closed.
	first := eb
	eb = s.connect(b)
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	for {
		if _, _, err := first.conn.Read(ctx); err != nil {
			if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
				t.Fatalf("replaced stream ended with %v", err)
			}
			break
		}
	}
	ea.send(envelope(b.ParticipantID, 2, []byte("again")))
	eb.decode(eb.expect(api.TypeEnvelope), &e)
	if e.ID != 2 {
		t.Fatalf("got %+v", e)
	}
}

// TestSilentClientDropped: a client that stops answering pings loses its
// stream and, after the drop timeout, its place in the room.
func TestSilentClientDropped(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.PingInterval = 100 * time.Millisecond
		c.DropTimeout = time.Second
	})
	b, _ := s.join("r1", "bob")
	// Bob's client reads nothing after the welcome, so it never answers a
	// ping (pongs are sent by the reading side).
	s.connect(b)
	s.waitDisconnected(b.ParticipantID)
	wait.For(t, "the silent participant to leave the room", func() bool {
		s.srv.mu.Lock()
		defer s.srv.mu.Unlock()
		_, present := s.srv.rooms["r1"]
		return !present
	})
}
