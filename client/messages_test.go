package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/e2ee"
	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
)

// inbox records the messages a peer's call delivers.
type inbox struct {
	mu   sync.Mutex
	msgs []Message
}

func readMessages(p *peer) *inbox {
	in := &inbox{}
	go func() {
		for m := range p.call.Messages() {
			in.mu.Lock()
			in.msgs = append(in.msgs, m)
			in.mu.Unlock()
		}
	}()
	return in
}

func (in *inbox) all() []Message {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]Message(nil), in.msgs...)
}

// waitFor waits until the inbox holds n messages and returns them.
func (in *inbox) waitFor(ctx context.Context, t *testing.T, what string, n int) []Message {
	t.Helper()
	wait.Until(ctx, t, what, func() bool { return len(in.all()) >= n })
	return in.all()
}

// keyed waits until every pair of the peers has its session and keys.
func keyed(ctx context.Context, t *testing.T, peers ...*peer) {
	t.Helper()
	for _, p := range peers {
		for _, q := range peers {
			if p != q {
				waitEvent(ctx, t, p, q.name+"'s key", isEncrypted(q.call.ID()))
			}
		}
	}
}

// delivered waits for the MessageDelivered event of message id to p's
// call from recipient.
func delivered(ctx context.Context, t *testing.T, p *peer, id uint64, recipient *peer) {
	t.Helper()
	waitEvent(ctx, t, p, fmt.Sprintf("message %d delivered to %s", id, recipient.name), func(e Event) bool {
		d, ok := e.(MessageDelivered)
		return ok && d.ID == id && d.To.ID == recipient.call.ID()
	})
}

// noMessagesLost checks that no peer dropped or refused a message.
func noMessagesLost(t *testing.T, peers ...*peer) {
	t.Helper()
	for _, p := range peers {
		if st := p.call.Stats(); st.MessagesDropped != 0 || st.MessagesRefused != 0 {
			t.Errorf("%s: %d messages dropped, %d refused", p.name, st.MessagesDropped, st.MessagesRefused)
		}
	}
}

// TestMessages: text messages reach every participant with a session, in
// the order sent, named by their sender's identity and key, and each
// recipient's receipt comes back; a direct message reaches its recipient
// alone; a verified sender is reported verified.
func TestMessages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	alice := joinPeer(ctx, t, srv, "chat", "alice")
	bob := joinPeer(ctx, t, srv, "chat", "bob")
	carol := joinPeer(ctx, t, srv, "chat", "carol")
	bobIn, carolIn := readMessages(bob), readMessages(carol)
	aliceIn := readMessages(alice)
	keyed(ctx, t, alice, bob, carol)

	const n = 40
	var ids []uint64
	for i := range n {
		sent, err := alice.call.SendMessage(ctx, fmt.Sprintf("message %d from alice ✓", i))
		if err != nil {
			t.Fatal(err)
		}
		if len(sent.To) != 2 {
			t.Fatalf("message %d went to %v, want bob and carol", i, sent.To)
		}
		ids = append(ids, sent.ID)
	}
	fp, err := bob.call.Fingerprint(alice.call.ID())
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range []struct {
		p  *peer
		in *inbox
	}{{bob, bobIn}, {carol, carolIn}} {
		msgs := rc.in.waitFor(ctx, t, rc.p.name+" receives alice's messages", n)
		for i, m := range msgs {
			if m.Text != fmt.Sprintf("message %d from alice ✓", i) {
				t.Fatalf("%s: message %d is %q: out of order or altered", rc.p.name, i, m.Text)
			}
			if m.From.ID != alice.call.ID() || m.From.Identity != "alice" || m.Fingerprint != fp || m.Verified || m.Direct || m.Missed != 0 || m.File != nil {
				t.Fatalf("%s: message %d: %+v", rc.p.name, i, m)
			}
			if m.Sent.IsZero() || m.Received.Before(m.Sent.Add(-time.Second)) {
				t.Fatalf("%s: times %v, %v", rc.p.name, m.Sent, m.Received)
			}
		}
		for _, id := range ids {
			delivered(ctx, t, alice, id, rc.p)
		}
	}

	// Direct: only bob; carol's next message shows nothing missed.
	direct, err := alice.call.SendMessageTo(ctx, bob.call.ID(), "just for bob")
	if err != nil || len(direct.To) != 1 || direct.To[0].ID != bob.call.ID() {
		t.Fatalf("direct: %+v, %v", direct, err)
	}
	if m := bobIn.waitFor(ctx, t, "bob's direct message", n+1)[n]; m.Text != "just for bob" || !m.Direct {
		t.Fatalf("bob got %+v", m)
	}
	delivered(ctx, t, alice, direct.ID, bob)

	// Replies go the other way; a verified sender shows as verified.
	if err := carol.call.SetVerified(bob.call.ID(), true); err != nil {
		t.Fatal(err)
	}
	reply, err := bob.call.SendMessage(ctx, "hello both")
	if err != nil {
		t.Fatal(err)
	}
	if m := aliceIn.waitFor(ctx, t, "alice gets bob's reply", 1)[0]; m.Text != "hello both" || m.Verified || m.From.Identity != "bob" {
		t.Fatalf("alice got %+v", m)
	}
	if m := carolIn.waitFor(ctx, t, "carol gets bob's reply", n+1)[n]; m.Text != "hello both" || !m.Verified || m.From.Identity != "bob" {
		t.Fatalf("carol got %+v", m)
	}
	delivered(ctx, t, bob, reply.ID, alice)
	delivered(ctx, t, bob, reply.ID, carol)
	if m, err := alice.call.SendMessage(ctx, "carol sees no gap"); err != nil || len(m.To) != 2 {
		t.Fatalf("%+v, %v", m, err)
	}
	if m := carolIn.waitFor(ctx, t, "carol's next message from alice", n+2)[n+1]; m.Text != "carol sees no gap" || m.Missed != 0 {
		t.Fatalf("carol got %+v", m)
	}
	if got := len(carolIn.all()); got != n+2 {
		t.Fatalf("carol received %d messages, want %d (the direct one is not hers)", got, n+2)
	}

	// Refusals before anything is sent.
	for name, send := range map[string]func() error{
		"empty": func() error { _, err := alice.call.SendMessage(ctx, ""); return err },
		"too long": func() error {
			_, err := alice.call.SendMessage(ctx, string(make([]byte, e2ee.MaxMessageText+1)))
			return err
		},
		"not UTF-8":  func() error { _, err := alice.call.SendMessage(ctx, "\xff"); return err },
		"nobody":     func() error { _, err := alice.call.SendMessageTo(ctx, "p_nobody", "x"); return err },
		"no one set": func() error { _, err := alice.call.SendMessageTo(ctx, "", "x"); return err },
	} {
		err := send()
		if err == nil || (!errors.Is(err, e2ee.ErrInvalidMessage) && !errors.Is(err, ErrUnknownParticipant)) {
			t.Errorf("%s: %v", name, err)
		}
	}
	noMessagesLost(t, alice, bob, carol)
}

// TestMessagesAcrossRejoin: the messages of a call that rejoins on its
// own go on both ways. The others see it as a new participant and number
// their messages to it from 1 again, as it does: none is refused or
// reported missed; it still names the others by the IDs it first knew.
func TestMessagesAcrossRejoin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	alice := joinPeer(ctx, t, srv, "chat-rejoin", "alice")
	bob := joinPeer(ctx, t, srv, "chat-rejoin", "bob")
	carol := joinPeer(ctx, t, srv, "chat-rejoin", "carol")
	aliceIn, bobIn, carolIn := readMessages(alice), readMessages(bob), readMessages(carol)
	keyed(ctx, t, alice, bob, carol)
	var last uint64
	for i := range 3 {
		sent, err := alice.call.SendMessage(ctx, fmt.Sprintf("before %d", i))
		if err != nil {
			t.Fatal(err)
		}
		last = sent.ID
	}
	for i := range 2 {
		if _, err := bob.call.SendMessageTo(ctx, alice.call.ID(), fmt.Sprintf("bob before %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	bobIn.waitFor(ctx, t, "bob's messages before", 3)
	carolIn.waitFor(ctx, t, "carol's messages before", 3)
	aliceIn.waitFor(ctx, t, "alice's messages before", 2)

	for _, p := range []*peer{alice, bob, carol} {
		p.forget()
	}
	if err := alice.call.tconn().pc.Close(); err != nil {
		t.Fatal(err)
	}
	waitEvent(ctx, t, alice, "her rejoin", isReconnected)
	isAlice := func(e Event) bool { pe, ok := e.(PeerEncrypted); return ok && pe.Participant.Identity == "alice" }
	waitEvent(ctx, t, bob, "alice's new key", isAlice)
	waitEvent(ctx, t, carol, "alice's new key", isAlice)
	waitEvent(ctx, t, alice, "bob's key again", isEncrypted(bob.call.ID()))
	waitEvent(ctx, t, alice, "carol's key again", isEncrypted(carol.call.ID()))

	after, err := alice.call.SendMessage(ctx, "after")
	if err != nil {
		t.Fatal(err)
	}
	if after.ID <= last || len(after.To) != 2 {
		t.Fatalf("message after the rejoin: %+v; want an ID above %d, to bob and carol", after, last)
	}
	for _, rc := range []struct {
		p  *peer
		in *inbox
	}{{bob, bobIn}, {carol, carolIn}} {
		if m := rc.in.waitFor(ctx, t, rc.p.name+" gets alice's message after her rejoin", 4)[3]; m.Text != "after" || m.Missed != 0 || m.From.Identity != "alice" {
			t.Fatalf("%s got %+v", rc.p.name, m)
		}
		delivered(ctx, t, alice, after.ID, rc.p)
	}
	// Bob names alice by her new ID; alice names bob by his first.
	bobsAlice := bob.call.Participants()
	if len(bobsAlice) != 2 {
		t.Fatalf("bob sees %v", bobsAlice)
	}
	var to string
	for _, p := range bobsAlice {
		if p.Identity == "alice" {
			to = p.ID
		}
	}
	reply, err := bob.call.SendMessageTo(ctx, to, "bob after")
	if err != nil {
		t.Fatal(err)
	}
	if m := aliceIn.waitFor(ctx, t, "alice gets bob's message after her rejoin", 3)[2]; m.Text != "bob after" || m.Missed != 0 || m.From.ID != bob.call.ID() {
		t.Fatalf("alice got %+v", m)
	}
	waitEvent(ctx, t, bob, "alice's receipt", func(e Event) bool {
		d, ok := e.(MessageDelivered)
		return ok && d.ID == reply.ID && d.To.ID == to
	})
	noMessagesLost(t, alice, bob, carol)
}

func TestMessageWithoutRecipients(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	alone := joinPeer(ctx, t, srv, "alone", "alice")
	if _, err := alone.call.SendMessage(ctx, "anyone?"); !errors.Is(err, ErrNoRecipients) {
		t.Fatalf("%v, want ErrNoRecipients", err)
	}
	if _, err := alone.call.SendFile(ctx, "f", "", bytes.NewReader([]byte("x"))); !errors.Is(err, ErrNoRecipients) {
		t.Fatalf("file: %v, want ErrNoRecipients", err)
	}
}

// blobFront serves the test server's API through a handler that may alter
// what the blob store returns, as a hostile server would.
type blobFront struct {
	*httptest.Server
	mu     sync.Mutex
	damage func([]byte) []byte
}

func startBlobFront(t *testing.T, srv *testserver.Server) *blobFront {
	t.Helper()
	f := &blobFront{}
	mux := http.NewServeMux()
	mux.Handle("/", srv.Signaling)
	mux.HandleFunc("GET /v1/rooms/{room}/blobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		srv.Signaling.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		f.mu.Lock()
		if f.damage != nil && rec.Code == http.StatusOK {
			body = f.damage(bytes.Clone(body))
		}
		f.mu.Unlock()
		w.WriteHeader(rec.Code)
		w.Write(body)
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func (f *blobFront) set(damage func([]byte) []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.damage = damage
}

// TestFiles: a file sent from an io.Reader arrives byte-identical through
// an io.Writer, both ways, with its name, type and size; one the server
// alters, cuts or reorders is refused; the limits come back as their
// error codes; a file of another room is not found.
func TestFiles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, &testserver.Options{MaxBlobBytes: 3 << 20, RoomBlobBytes: 8 << 20})
	front := startBlobFront(t, srv)
	join := func(room, name string) *peer {
		call, err := Join(ctx, front.URL, srv.Token(room, name), &Options{IPFilter: loopback})
		if err != nil {
			t.Fatalf("%s: join: %v", name, err)
		}
		p := &peer{t: t, name: name, call: call, frames: make(map[string][]Frame), readDone: make(chan struct{})}
		go p.read()
		t.Cleanup(func() {
			call.Leave()
			<-p.readDone
		})
		return p
	}
	alice, bob := join("files", "alice"), join("files", "bob")
	aliceIn, bobIn := readMessages(alice), readMessages(bob)
	keyed(ctx, t, alice, bob)

	content := make([]byte, 2<<20+12345)
	rand.Read(content)
	sent, err := alice.call.SendFile(ctx, "report 2026 — draft.pdf", "application/pdf", bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	m := bobIn.waitFor(ctx, t, "bob gets the file message", 1)[0]
	if m.File == nil || m.File.Name != "report 2026 — draft.pdf" || m.File.Type != "application/pdf" || m.File.Size != int64(len(content)) || m.Text != "" || m.From.Identity != "alice" {
		t.Fatalf("file message %+v (%+v)", m, m.File)
	}
	var got bytes.Buffer
	if err := bob.call.ReceiveFile(ctx, m.File, &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), content) {
		t.Fatalf("received %d bytes, not the file sent", got.Len())
	}
	delivered(ctx, t, alice, sent.ID, bob)

	// The other way, a direct one, of an empty file.
	if _, err := bob.call.SendFileTo(ctx, alice.call.ID(), "empty.txt", "", bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	em := aliceIn.waitFor(ctx, t, "alice gets the empty file", 1)[0]
	got.Reset()
	if err := alice.call.ReceiveFile(ctx, em.File, &got); err != nil || got.Len() != 0 || !em.Direct || em.File.Size != 0 {
		t.Fatalf("empty file: %d bytes, %+v, %v", got.Len(), em, err)
	}

	// A server that alters, cuts or reorders the ciphertext is caught.
	chunk := e2ee.FileHeaderSize + e2ee.FileChunkSize + 16
	for name, damage := range map[string]func([]byte) []byte{
		"a flipped bit":            func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"cut after a chunk":        func(b []byte) []byte { return b[:chunk] },
		"cut inside a chunk":       func(b []byte) []byte { return b[:len(b)-100] },
		"two chunks swapped":       func(b []byte) []byte { return swapChunks(b, 1, 2) },
		"a chunk added at the end": func(b []byte) []byte { return append(b, b[e2ee.FileHeaderSize:chunk]...) },
	} {
		front.set(damage)
		err := bob.call.ReceiveFile(ctx, m.File, io.Discard)
		if !errors.Is(err, e2ee.ErrFileCorrupt) {
			t.Errorf("%s: %v, want ErrFileCorrupt", name, err)
		}
	}
	front.set(nil)

	// Limits: over the file cap, then over the room's quota (8 MiB; 2 are
	// stored).
	_, err = alice.call.SendFile(ctx, "big", "", bytes.NewReader(make([]byte, 3<<20)))
	if !isAPIError(err, api.CodeBlobTooLarge) {
		t.Fatalf("oversized file: %v, want %s", err, api.CodeBlobTooLarge)
	}
	for i := 0; ; i++ {
		_, err = alice.call.SendFile(ctx, "fill", "", bytes.NewReader(make([]byte, 2<<20)))
		if err != nil || i > 4 {
			break
		}
	}
	if !isAPIError(err, api.CodeRoomQuotaExceeded) {
		t.Fatalf("full room: %v, want %s", err, api.CodeRoomQuotaExceeded)
	}

	// A file of this room, asked for in another.
	carol := join("elsewhere", "carol")
	if err := carol.call.ReceiveFile(ctx, m.File, io.Discard); !isAPIError(err, api.CodeBlobNotFound) {
		t.Fatalf("another room's file: %v, want %s", err, api.CodeBlobNotFound)
	}
}

// swapChunks swaps chunks i and j of an encrypted file.
func swapChunks(b []byte, i, j int) []byte {
	const size = e2ee.FileChunkSize + 16
	at := func(k int) []byte { return b[e2ee.FileHeaderSize+k*size : e2ee.FileHeaderSize+(k+1)*size] }
	ci, cj := bytes.Clone(at(i)), at(j)
	copy(at(i), cj)
	copy(at(j), ci)
	return b
}
