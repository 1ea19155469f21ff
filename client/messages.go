package client

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/e2ee"
)

// This file is a call's messages (docs/PROTOCOL.md §11): text and file
// offers sent end to end, one copy per recipient in the Double Ratchet
// session the call already has with it, numbered per recipient, and the
// receipts recipients send back. The worker of keys.go runs all of it, in
// the call's current join.
//
// The numbering is that of one join's participant ID to another's
// (docs/PROTOCOL.md §11.2): it starts again at 1 when either side joins
// again, so it lives in the join (e2eeState.chat), while what the
// application sees of messages (the channel, SentMessage IDs, the
// counters) is the call's and outlives its rejoins. A participant that
// rejoined on its own is a new participant to those that did not, and it
// cannot tell which of them rejoined too: keeping its numbers would make
// the others refuse its messages, or report missed ones that were not.

// MessageBuffer is the size of the channel Call.Messages delivers on.
const MessageBuffer = 256

// maxUnreceipted bounds the messages per recipient whose receipt is still
// awaited; older ones are forgotten (never reported delivered).
const maxUnreceipted = 1024

// ErrNoRecipients is returned by the Send methods when no participant can
// receive a message now: nobody else is in the call, or no one's
// end-to-end session is set up (or every one awaits an identity decision).
var ErrNoRecipients = errors.New("client: no participant can receive messages yet")

// Message is a message another participant sent: a text, or a file to
// fetch with Call.ReceiveFile.
type Message struct {
	// From is the sender. Fingerprint is the fingerprint of the identity
	// key it presents in this call and Verified whether the user marked
	// that key verified (Call.SetVerified), both as they were when the
	// message arrived.
	From        api.Participant
	Fingerprint string
	Verified    bool
	// Sent is the time on the sender's clock, Received the arrival here.
	Sent, Received time.Time
	// Direct marks a message sent to this caller alone.
	Direct bool
	// Text is the text of a text message; empty for a file.
	Text string
	// File is the file of a file message; nil for a text.
	File *File
	// Missed counts the sender's messages to this caller that never
	// arrived before this one (lost with a broken event stream, or
	// refused by the server).
	Missed uint64
}

// File is a file offered in a Message. Its name, type and size came
// encrypted from the sender; the server holds only its ciphertext.
type File struct {
	Name string
	Type string // media type, "" when the sender gave none
	Size int64  // bytes
	ref  e2ee.FileRef
}

// SentMessage is a message the caller sent: ID names it in the
// MessageDelivered events of its recipients, To.
type SentMessage struct {
	ID uint64
	To []api.Participant
}

// MessageDelivered reports that a recipient's client has a message the
// caller sent, and handed it to its application: the recipient's own
// receipt, end-to-end encrypted, which the server can neither read nor
// forge. Until then the message is only sent (the server took it); one
// the server refused, or that was lost, is never reported delivered.
type MessageDelivered struct {
	ID uint64
	To api.Participant
}

func (MessageDelivered) event() {}

// chat is the message state of a call, across its joins.
type chat struct {
	messages chan Message
	nextID   atomic.Uint64
	dropped  atomic.Uint64 // messages lost because Messages was full
	refused  atomic.Uint64 // messages out of order or malformed
}

// chatPeer numbers the messages between the caller and one participant in
// one join.
type chatPeer struct {
	sent        uint64            // last Seq sent to it
	received    uint64            // last Seq taken from it
	unreceipted map[uint64]uint64 // Seq sent -> SentMessage.ID, awaiting a receipt
}

func newChat() *chat {
	return &chat{messages: make(chan Message, MessageBuffer)}
}

// chatPeer returns the numbering of the messages with participant id in
// this join. Worker only.
func (e *e2eeState) chatPeer(id string) *chatPeer {
	p := e.chat[id]
	if p == nil {
		p = &chatPeer{unreceipted: make(map[uint64]uint64)}
		e.chat[id] = p
	}
	return p
}

// Messages delivers the messages other participants send to the caller, in
// the order each sender sent them. When the application falls behind,
// further messages are dropped and counted (Stats.MessagesDropped), and
// their senders never see them delivered. It is closed when the call ends.
func (c *Call) Messages() <-chan Message { return c.chat.messages }

// SendMessage sends text to every participant whose end-to-end session is
// set up, each copy encrypted in that participant's session; the server
// relays ciphertext only. text is 1 to e2ee.MaxMessageText bytes of UTF-8.
// It returns once the copies are on their way: MessageDelivered events
// report each recipient's receipt. While the call reconnects it fails with
// ErrReconnecting.
func (c *Call) SendMessage(ctx context.Context, text string) (SentMessage, error) {
	return c.sendMessage(ctx, "", e2ee.Message{Text: text})
}

// SendMessageTo is SendMessage to one participant only, who sees the
// message as Direct. It fails with ErrUnknownParticipant or ErrNoSession
// when that participant cannot receive it now.
func (c *Call) SendMessageTo(ctx context.Context, participantID, text string) (SentMessage, error) {
	if participantID == "" {
		return SentMessage{}, ErrUnknownParticipant
	}
	return c.sendMessage(ctx, participantID, e2ee.Message{Text: text, Direct: true})
}

// sendMessage encrypts m for each recipient (all, or only one) on the
// worker of the current join, numbering it in each recipient's sequence.
func (c *Call) sendMessage(ctx context.Context, only string, m e2ee.Message) (SentMessage, error) {
	// Check the fields before anything is numbered.
	m.Seq = 1
	if _, err := m.MarshalBinary(); err != nil {
		return SentMessage{}, fmt.Errorf("client: send message: %w", err)
	}
	s := c.session()
	if s == nil {
		return SentMessage{}, c.reconnecting()
	}
	type result struct {
		sent SentMessage
		err  error
	}
	done := make(chan result, 1)
	s.e2e.queue(func(wctx context.Context) {
		if ctx.Err() != nil {
			done <- result{err: ctx.Err()}
			return
		}
		sent, err := s.e2e.sendMessage(wctx, only, m)
		done <- result{sent, err}
	})
	select {
	case r := <-done:
		return r.sent, r.err
	case <-ctx.Done():
		return SentMessage{}, ctx.Err()
	case <-s.conn.done:
		// The join ended before its worker sent the message.
		return SentMessage{}, c.reconnecting()
	}
}

// sendMessage is the worker's half of Call.sendMessage.
func (e *e2eeState) sendMessage(ctx context.Context, only string, m e2ee.Message) (SentMessage, error) {
	var to []*remote
	for _, r := range e.reachable() {
		if only == "" || r.p.ID == only {
			to = append(to, r)
		}
	}
	if len(to) == 0 {
		switch {
		case only == "":
			return SentMessage{}, ErrNoRecipients
		case e.remote(only) == nil:
			return SentMessage{}, ErrUnknownParticipant
		default:
			return SentMessage{}, ErrNoSession
		}
	}
	sent := SentMessage{ID: e.sess.call.chat.nextID.Add(1)}
	m.Sent = time.Now()
	var sendErr error
	for _, r := range to {
		p := e.chatPeer(r.p.ID)
		p.sent++
		m.Seq = p.sent
		pt, err := m.MarshalBinary()
		if err != nil {
			return SentMessage{}, fmt.Errorf("client: send message: %w", err)
		}
		err = e.send(ctx, r, pt)
		clear(pt)
		if err != nil {
			sendErr = err
			continue
		}
		p.unreceipted[m.Seq] = sent.ID
		delete(p.unreceipted, m.Seq-maxUnreceipted)
		sent.To = append(sent.To, r.p)
	}
	if len(sent.To) == 0 {
		return SentMessage{}, fmt.Errorf("client: send message: %w", sendErr)
	}
	return sent, nil
}

// message handles a message or receipt content from r. Worker only.
func (e *e2eeState) message(ctx context.Context, r *remote, pt []byte) {
	ch := e.sess.call.chat
	p := e.chatPeer(r.p.ID)
	if e2ee.ContentTypeOf(pt) == e2ee.ContentReceipt {
		rc, err := e2ee.ParseReceipt(pt)
		if err != nil {
			e.log.Debug("drop receipt", "participant", r.p.ID, "err", err)
			return
		}
		if id, ok := p.unreceipted[rc.Seq]; ok {
			delete(p.unreceipted, rc.Seq)
			e.sess.event(MessageDelivered{ID: id, To: r.p})
		}
		return
	}
	if r.blocked.Load() {
		// The first message of a session under a changed identity key
		// comes with the session; nothing of it reaches the application
		// until that key is accepted, and the sender sees no receipt.
		ch.refused.Add(1)
		e.log.Debug("refuse message of a participant awaiting acceptance", "participant", r.p.ID)
		return
	}
	m, err := e2ee.ParseMessage(pt)
	if err != nil || m.Seq <= p.received {
		// A number not above the last one taken is a message moved or
		// repeated by the relay: taking it would show it out of order.
		ch.refused.Add(1)
		e.log.Debug("refuse message", "participant", r.p.ID, "seq", m.Seq, "last", p.received, "err", err)
		return
	}
	missed := m.Seq - p.received - 1
	p.received = m.Seq
	msg := Message{
		From:     r.p,
		Sent:     m.Sent,
		Received: time.Now(),
		Direct:   m.Direct,
		Text:     m.Text,
		Missed:   missed,
	}
	if pk, err := e.peerKey(r.p.ID); err == nil {
		msg.Fingerprint = pk.key.Fingerprint()
		if t, err := e.trust.Lookup(r.p.Identity); err == nil {
			msg.Verified = t.Verified && t.Key.Equal(pk.key)
		}
	}
	if f := m.File; f != nil {
		msg.File = &File{Name: f.Name, Type: f.Type, Size: f.Size, ref: *f}
	}
	select {
	case ch.messages <- msg:
	default:
		ch.dropped.Add(1)
		return
	}
	receipt, err := e2ee.Receipt{Seq: m.Seq}.MarshalBinary()
	if err != nil {
		e.log.Error("encode receipt", "err", err)
		return
	}
	e.send(ctx, r, receipt)
}
