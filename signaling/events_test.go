package signaling

import (
	"bytes"
	"context"
	"encoding/json"
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
	const n = 300
	// A rate whose burst takes all n at once: the order is under test here.
	s := newTestServer(t, func(c *Config) { c.EnvelopesPerSecond = n })
	a, _ := s.join("r1", "alice")
	b, _ := s.join("r1", "bob")
	ea := s.connect(a)
	eb := s.connect(b)
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

// TestEnvelopeRateLimit: a sender flooding the relay with full-size
// envelopes is held to its byte rate and one flooding it with small ones to
// its message rate; each refused envelope gets envelope_rate_limited with
// its id. Each limit's burst passes whole, other senders are unaffected,
// and the flooder can send again once its bucket refills. The rates are
// low so that the floods outrun them even on a slow machine.
func TestEnvelopeRateLimit(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.DropTimeout = wait.Timeout
		c.EnvelopesPerSecond = 50
		c.EnvelopeBytesPerSecond = 4 * DefaultMaxEnvelopeBytes
	})
	var ids [4]api.JoinResponse
	var streams [4]*events
	for i, name := range []string{"bob", "alice", "dave", "carol"} {
		ids[i], _ = s.join("r1", name)
		for _, e := range streams[:i] {
			e.expectJoined(ids[i].ParticipantID)
		}
		streams[i] = s.connect(ids[i])
	}
	bob, eb := ids[0], streams[0]
	received := collectEnvelopes(eb)
	cfg := s.srv.cfg
	full := bytes.Repeat([]byte{0xa5}, cfg.MaxEnvelopeBytes)

	// flood floods bob from sender and returns how many envelopes got
	// through, checking the refusals against what the buckets allow.
	flood := func(sender int, n int, data []byte, burst, perSecond float64) int {
		e, from := streams[sender], ids[sender].ParticipantID
		start := time.Now()
		for i := 1; i <= n; i++ {
			e.send(envelope(bob.ParticipantID, uint64(i), data))
		}
		e.send(map[string]string{"type": "marker"})
		limited := map[uint64]bool{}
		for {
			var ev api.ErrorEvent
			e.decode(e.expect(api.TypeError), &ev)
			if ev.Error.Code == api.CodeUnknownMessageType {
				break
			}
			if ev.Error.Code != api.CodeEnvelopeRateLimited || ev.Ref < 1 || ev.Ref > uint64(n) || limited[ev.Ref] {
				t.Fatalf("error %+v, want one envelope_rate_limited per refused envelope", ev)
			}
			limited[ev.Ref] = true
		}
		elapsed := time.Since(start)
		accepted := n - len(limited)
		// Carol's envelope, sent now, reaches bob after everything the
		// flood got through.
		streams[3].send(envelope(bob.ParticipantID, 0, []byte("after the flood")))
		delivered := 0
		for e := range received {
			if e.From == ids[3].ParticipantID && string(e.Data) == "after the flood" {
				break
			}
			if e.From == from {
				delivered++
			}
		}
		t.Logf("%d of %d envelopes of %d bytes accepted in %v", accepted, n, len(data), elapsed.Round(time.Millisecond))
		if most := burst + perSecond*elapsed.Seconds() + 1; accepted < int(burst) || float64(accepted) > most {
			t.Errorf("%d envelopes accepted in %v, want the burst of %g and at most %.0f", accepted, elapsed, burst, most)
		}
		if delivered != accepted {
			t.Errorf("bob got %d envelopes from the flood, %d were accepted", delivered, accepted)
		}
		return len(limited)
	}

	byteBurst := float64(envelopeBurstSeconds * cfg.EnvelopeBytesPerSecond / len(full))
	limited := flood(1, 100, full, byteBurst, float64(cfg.EnvelopeBytesPerSecond/len(full)))
	msgBurst := float64(envelopeBurstSeconds * cfg.EnvelopesPerSecond)
	limited += flood(2, 400, []byte("k"), msgBurst, float64(cfg.EnvelopesPerSecond))
	if limited == 0 {
		t.Fatal("no envelope was rate limited")
	}
	if got := s.srv.Stats().EnvelopesRefused[string(api.CodeEnvelopeRateLimited)]; got != uint64(limited) {
		t.Errorf("stats count %d rate-limited envelopes, want %d", got, limited)
	}

	// Carol, who sent at a normal pace meanwhile, is untouched; so is
	// alice once her bucket has refilled for one more envelope.
	time.Sleep(time.Second * time.Duration(len(full)) / time.Duration(cfg.EnvelopeBytesPerSecond))
	streams[1].send(envelope(bob.ParticipantID, 1000, full))
	for i := range 20 {
		streams[3].send(envelope(bob.ParticipantID, uint64(i+1), []byte("normal pace")))
	}
	carol, fromAlice := 0, 0
	for carol < 20 || fromAlice < 1 {
		e := <-received
		switch e.From {
		case ids[3].ParticipantID:
			carol++
		case ids[1].ParticipantID:
			fromAlice++
		}
	}
	streams[3].send(map[string]string{"type": "marker"})
	streams[3].expectError(api.CodeUnknownMessageType)
	streams[1].send(map[string]string{"type": "marker"})
	streams[1].expectError(api.CodeUnknownMessageType)
}

// collectEnvelopes reads e's stream in the background and passes on the
// envelopes, until the stream ends.
func collectEnvelopes(e *events) <-chan api.Envelope {
	ch := make(chan api.Envelope, 1024)
	go func() {
		defer close(ch)
		for {
			_, b, err := e.conn.Read(context.Background())
			if err != nil {
				return
			}
			var env api.Envelope
			if json.Unmarshal(b, &env) == nil && env.Type == api.TypeEnvelope {
				ch <- env
			}
		}
	}()
	return ch
}
