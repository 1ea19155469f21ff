package loadtest

import (
	"fmt"
	"time"
)

// progress prints the live status line.
type progress struct {
	stopc chan struct{}
	done  chan struct{}
}

func (p *progress) stop() {
	close(p.stopc)
	<-p.done
}

func (r *loadRun) startProgress(start time.Time) *progress {
	p := &progress{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastSent, lastRecv uint64
		var loss lossMeter
		lastPrint := time.Now()
		total := r.cfg.Rooms * r.cfg.Callers
		for {
			select {
			case <-p.stopc:
				if r.cfg.Progress != nil && r.cfg.Terminal {
					fmt.Fprintln(r.cfg.Progress)
				}
				return
			case <-t.C:
			}
			sent, recv := r.sent.Load(), r.received.Load()
			s := Sample{
				T:              round3(time.Since(start).Seconds()),
				Joined:         r.joined.Load(),
				FramesSent:     sent - lastSent,
				FramesReceived: recv - lastRecv,
				Interrupted:    r.interruptedNow.Load(),
			}
			lastSent, lastRecv = sent, recv
			r.mu.Lock()
			r.timeline = append(r.timeline, s)
			failed := len(r.failed)
			r.mu.Unlock()
			if r.cfg.Progress == nil || !r.cfg.Terminal && time.Since(lastPrint) < r.cfg.ProgressEvery {
				continue
			}
			remaining := "ramping"
			if end := r.steadyEnd.Load(); end != 0 {
				remaining = fmt.Sprintf("%.0fs left", max(0, time.Until(time.Unix(0, end)).Seconds()))
			}
			line := fmt.Sprintf("%5.0fs (%s)  joined %d/%d, failed %d, interrupted %d  %6d frames/s in  %s",
				s.T, remaining, s.Joined, total, failed, s.Interrupted, s.FramesReceived,
				loss.next(r.expectApprox.Load(), recv, time.Since(lastPrint)))
			lastPrint = time.Now()
			if r.cfg.Terminal {
				fmt.Fprintf(r.cfg.Progress, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(r.cfg.Progress, line)
			}
		}
	}()
	return p
}

// lossMeter estimates loss for the progress line from the run's running
// counts of frames expected (each frame sent, once per other caller then
// in its room) and received. The loss of the last interval shows an
// outage as it happens, which the average over the run hides.
type lossMeter struct {
	expected, received uint64 // at the previous line
}

// next returns the loss since the previous call, which was interval ago,
// and since the start, given the counts now.
func (m *lossMeter) next(expected, received uint64, interval time.Duration) string {
	last := lossPct(expected-m.expected, received-m.received)
	m.expected, m.received = expected, received
	return fmt.Sprintf("loss %s last %.0fs, %s overall", last, interval.Seconds(), lossPct(expected, received))
}

// lossPct formats the share of expected frames not received, or "-" when
// none was expected. Frames sent before an interval may arrive in it, so
// more received than expected is no loss.
func lossPct(expected, received uint64) string {
	if expected == 0 {
		return "-"
	}
	if received >= expected {
		return "0.00%"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(expected-received)/float64(expected))
}
