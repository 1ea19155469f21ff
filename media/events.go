package media

import "sync"

// eventQueue delivers one peer's PeerHandler calls in order from a single
// goroutine, so the handler may call back into the Peer (SetAnswer, Close)
// without deadlocking and a slow handler stalls nothing but itself.
type eventQueue struct {
	mu     sync.Mutex
	items  []func(PeerHandler)
	final  func(PeerHandler)
	closed bool
	wake   chan struct{}
}

func newEventQueue() *eventQueue { return &eventQueue{wake: make(chan struct{}, 1)} }

func (q *eventQueue) push(f func(PeerHandler)) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.items = append(q.items, f)
	q.mu.Unlock()
	q.signal()
}

// close discards undelivered events and, if final is not nil, delivers it
// as the last call.
func (q *eventQueue) close(final func(PeerHandler)) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	q.items = nil
	q.final = final
	q.mu.Unlock()
	q.signal()
}

func (q *eventQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *eventQueue) run(h PeerHandler) {
	for {
		q.mu.Lock()
		switch {
		case len(q.items) > 0:
			f := q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			q.mu.Unlock()
			f(h)
			continue
		case q.closed:
			f := q.final
			q.mu.Unlock()
			if f != nil {
				f(h)
			}
			return
		}
		q.mu.Unlock()
		<-q.wake
	}
}
