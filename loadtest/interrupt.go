package loadtest

import (
	"context"
	"math/rand/v2"
	"time"
)

// DefaultStallAfter is Config.StallAfter's default.
const DefaultStallAfter = 2 * time.Second

// watchEvery is how often every call is checked for stalled frames: a gap
// shorter than StallAfter plus this may go unseen.
const watchEvery = 100 * time.Millisecond

// Backoff of the load tester's own rejoins (Config.Rejoin): the first
// attempt comes after about rejoinFirst, then the wait doubles up to
// rejoinMax, each wait drawn between half and all of it.
const (
	rejoinFirst = 200 * time.Millisecond
	rejoinMax   = 2 * time.Second
)

// interruption is a stretch of a caller's call without audio. It starts at
// the last frame the caller received (or when its call ended, if it was
// expecting none) and ends at the first frame received after it.
type interruption struct {
	start, end int64 // unix ns; end 0 = not recovered
	// ended says the call ended, rather than only its frames stopping.
	ended bool
	// needFrames says another publisher was in the room: only a frame
	// ends the interruption. Otherwise being back in a call does.
	needFrames bool
}

// interrupt opens an interruption of the caller, unless one is open.
func (c *caller) interrupt(start int64, ended, needFrames bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.outage != nil {
		c.outage.ended = c.outage.ended || ended
		return
	}
	c.outage = &interruption{start: start, ended: ended, needFrames: needFrames}
	c.interrupted.Store(true)
	r := c.r
	r.interruptedNow.Add(1)
	r.mu.Lock()
	r.interruptions = append(r.interruptions, c.outage)
	r.mu.Unlock()
	r.cfg.Logger.Info("loadtest: call interrupted", "caller", c.identity, "ended", ended)
}

// resume closes the caller's open interruption at the time given.
func (c *caller) resume(at int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.outage == nil {
		return
	}
	c.outage.end = max(at, c.outage.start)
	c.outage = nil
	c.interrupted.Store(false)
	c.r.interruptedNow.Add(-1)
}

// rejoined counts a rejoin of the caller after its call ended or broke:
// the load tester's own (Config.Rejoin) and the SDK's, reported by its
// Reconnected event, which watch passes on here. A caller that
// expected no frames has recovered by being back; the others recover at
// their next frame.
func (c *caller) rejoined() {
	c.r.rejoins.Add(1)
	c.mu.Lock()
	alone := c.outage != nil && !c.outage.needFrames
	c.mu.Unlock()
	if alone {
		c.resume(time.Now().UnixNano())
	}
}

// watchCalls checks every call for stalled frames until stop is closed.
func (r *loadRun) watchCalls(stop <-chan struct{}) {
	every(watchEvery, stop, func(now time.Time) {
		r.mu.Lock()
		parts := r.parts // appended to only: the elements read here stay put
		r.mu.Unlock()
		for _, p := range parts {
			if !p.over.Load() {
				p.checkStall(now.UnixNano())
			}
		}
	})
}

// checkStall interrupts the caller if its frames stopped for longer than
// StallAfter while another publisher was in its room. A caller alone
// expects nothing, and until its first frame a new peer's frames may take
// the settle time to start (renegotiation, keys).
func (p *participation) checkStall(now int64) {
	r := p.caller.r
	if r.roomActive[p.caller.room].Load() < 2 {
		p.expectSince.Store(0)
		return
	}
	since := p.expectSince.Load()
	if since == 0 {
		since = now
		p.expectSince.Store(now)
	}
	last := p.lastFrame.Load()
	from := last
	if last < since {
		from = since + int64(settle)
	}
	if now-from > int64(r.cfg.StallAfter) {
		p.caller.interrupt(max(last, since), false, true)
	}
}

// ended accounts the end of the participation's call, once its frames
// channel is closed. A call the load tester did not end (see leave)
// interrupts the caller, whom the load tester then rejoins if asked.
func (p *participation) ended() {
	c := p.caller
	r := c.r
	now := time.Now().UnixNano()
	p.over.Store(true)
	r.joined.Add(-1)
	r.roomActive[c.room].Add(-1)
	if !c.shard.release(c, p) {
		return // being left on purpose
	}
	p.leaving = now
	p.stats = p.call.Stats()
	r.cfg.Logger.Info("loadtest: call ended", "caller", c.identity, "err", p.call.Err())
	start, needFrames := p.outageStart(now)
	c.interrupt(start, true, needFrames)
	r.startRejoin(c)
}

// outageStart returns when an interruption of the participation's call
// noticed at now began, and whether only a frame ends it: the last frame
// received, if another publisher was in the room, else now.
func (p *participation) outageStart(now int64) (start int64, needFrames bool) {
	if p.expectSince.Load() == 0 {
		return now, false
	}
	return max(p.lastFrame.Load(), p.expectSince.Load()), true
}

// startRejoin rejoins the caller in the background when Config.Rejoin is
// set and the run is not ending.
func (r *loadRun) startRejoin(c *caller) {
	if !r.cfg.Rejoin {
		return
	}
	r.rejoinMu.Lock()
	defer r.rejoinMu.Unlock()
	if r.rejoinCtx.Err() != nil {
		return
	}
	r.rejoinWG.Add(1)
	go func() {
		defer r.rejoinWG.Done()
		c.rejoin(r.rejoinCtx)
	}()
}

// stopRejoins ends the rejoins under way and waits for them.
func (r *loadRun) stopRejoins() {
	r.rejoinMu.Lock()
	r.stopRejoin()
	r.rejoinMu.Unlock()
	r.rejoinWG.Wait()
}

// rejoin joins the caller again, as an application would after its call
// ended: with exponential backoff and jitter, until it is back in or ctx
// ends. Failed attempts are counted, not reported as failed joins.
func (c *caller) rejoin(ctx context.Context) {
	r := c.r
	wait := rejoinFirst
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait/2 + rand.N(wait/2)):
		}
		err := c.connect(ctx)
		if err == nil {
			c.rejoined()
			return
		}
		if ctx.Err() != nil {
			return
		}
		r.rejoinFailures.Add(1)
		r.cfg.Logger.Debug("loadtest: rejoin failed", "caller", c.identity, "err", err)
		wait = min(2*wait, rejoinMax)
	}
}
