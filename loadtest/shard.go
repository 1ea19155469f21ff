package loadtest

import (
	"context"
	"sync"
	"time"
)

// shard paces a share of the callers: one ticker writes one frame for each
// of its callers every FrameDuration. A ticker per caller would cost a
// timer wakeup per frame; a shard per CPU keeps the fan-out parallel.
type shard struct {
	r       *run
	mu      sync.Mutex
	callers []*caller
}

func (s *shard) add(c *caller, p *participation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.part, c.n = p, 0
	s.callers = append(s.callers, c)
}

// remove takes c out of the shard and returns its participation. Once it
// returns, no frame of c is being written or will be.
func (s *shard) remove(c *caller) *participation {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := c.part
	if p == nil {
		return nil
	}
	for i, x := range s.callers {
		if x == c {
			s.callers = append(s.callers[:i], s.callers[i+1:]...)
			break
		}
	}
	c.part = nil
	p.snd.mu.Lock()
	if p.snd.left == 0 { // the end of the run may have set it already
		p.snd.left = time.Now().UnixNano()
	}
	p.snd.mu.Unlock()
	return p
}

func (s *shard) run(ctx context.Context) {
	t := time.NewTicker(FrameDuration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		for _, c := range s.callers {
			s.send(c)
		}
		s.mu.Unlock()
	}
}

func (s *shard) send(c *caller) {
	r := s.r
	i := c.clipPos
	c.clipPos = (c.clipPos + 1) % len(r.packets)
	p := c.part
	p.snd.record(c.n, r.hashes[i], time.Now().UnixNano())
	c.n++
	if err := p.call.WriteFrame(r.packets[i], FrameDuration); err != nil {
		r.writeErrors.Add(1)
		return
	}
	r.sent.Add(1)
	if others := r.roomActive[c.room].Load() - 1; others > 0 {
		r.expectApprox.Add(uint64(others))
	}
}
