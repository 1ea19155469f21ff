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
	r       *loadRun
	mu      sync.Mutex
	callers []*caller
}

func (s *shard) add(c *caller, p *participation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.part, c.n, c.due = p, 0, 0
	s.callers = append(s.callers, c)
}

// remove takes c out of the shard and returns its participation. Once it
// returns, no frame of c is being written or will be.
func (s *shard) remove(c *caller) *participation {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := c.part
	if p != nil {
		s.take(c)
	}
	return p
}

// release takes c out of the shard if p is still its participation, and
// reports whether it was: of leave and a call's own end, only one gets it.
func (s *shard) release(c *caller, p *participation) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.part != p {
		return false
	}
	s.take(c)
	return true
}

// take removes c, which is in the shard, with s.mu held.
func (s *shard) take(c *caller) {
	for i, x := range s.callers {
		if x == c {
			s.callers = append(s.callers[:i], s.callers[i+1:]...)
			break
		}
	}
	p := c.part
	c.part = nil
	p.snd.mu.Lock()
	if p.snd.left == 0 { // the end of the run may have set it already
		p.snd.left = time.Now().UnixNano()
	}
	p.snd.mu.Unlock()
}

func (s *shard) run(ctx context.Context) {
	t := time.NewTicker(FrameDuration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.tick(now)
		}
	}
}

// maxBurst is the most frames a caller sends in one tick to catch up
// after the scheduler fell behind (as a client's capture queue would
// drain); older frames are skipped, and Report.SendPacePct shows it.
const maxBurst = 3

func (s *shard) tick(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.callers {
		if c.due == 0 {
			c.start = now
		}
		c.due = uint64(now.Sub(c.start)/FrameDuration) + 1
		if c.due > c.n+maxBurst {
			c.start = c.start.Add(time.Duration(c.due-c.n-maxBurst) * FrameDuration)
			c.due = c.n + maxBurst
		}
		for c.n < c.due {
			s.send(c)
		}
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
