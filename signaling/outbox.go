package signaling

import "sync"

// outbox is a participant's queue of encoded server-to-client messages. It
// outlives any one WebSocket: events that happen while the participant is not
// connected (right after join, or during a reconnect) wait here and are
// written, in order, by whichever connection drains it next.
type outbox struct {
	mu     sync.Mutex
	queue  [][]byte
	limit  int           // messages of any kind
	notify chan struct{} // capacity 1: something was queued or the box closed
	closed bool          // no more messages; the writer ends the stream once drained
}

func newOutbox(limit int) *outbox {
	return &outbox{limit: limit, notify: make(chan struct{}, 1)}
}

// push queues msg if fewer than limit messages are waiting and reports
// whether it did. Callers pass a smaller limit for messages that may be
// refused (envelopes) so those can never crowd out control events.
func (o *outbox) push(msg []byte, limit int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || len(o.queue) >= min(limit, o.limit) {
		return false
	}
	o.queue = append(o.queue, msg)
	o.signal()
	return true
}

// close queues a last message and marks the box closed.
func (o *outbox) close(last []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	if last != nil {
		o.queue = append(o.queue, last)
	}
	o.closed = true
	o.signal()
}

// pop returns the next message; ok is false when the queue is empty, and
// closed reports whether the box will never receive more.
func (o *outbox) pop() (msg []byte, ok, closed bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) == 0 {
		return nil, false, o.closed
	}
	msg = o.queue[0]
	o.queue[0] = nil
	o.queue = o.queue[1:]
	return msg, true, false
}

// unpop puts back a message a writer took but could not deliver, so the next
// connection sends it first.
func (o *outbox) unpop(msg []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.queue = append([][]byte{msg}, o.queue...)
	o.signal()
}

func (o *outbox) signal() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}
