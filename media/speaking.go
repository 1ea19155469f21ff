package media

import (
	"sync/atomic"
	"time"
)

// Voice activity from the RFC 6464 audio level (0 = loudest, 127 = silence,
// in -dBov). A participant starts speaking after about 200 ms of packets
// louder than -50 dBov and stops after 500 ms without one: the onset needs
// sustained sound (a click does not count) and the release bridges the
// pauses between words, so events follow sentences, not syllables.
const (
	speakingLevel    = 50 // -dBov; a level at or below this is voice
	speakingOnAfter  = 200 * time.Millisecond
	speakingOffAfter = 500 * time.Millisecond
	// A gap longer than this between loud packets restarts the onset.
	speakingGap = 150 * time.Millisecond
)

// speechDetector is fed by the forwarding loop (observe, two atomic stores)
// and evaluated by the engine's tick (evaluate), which owns the state and
// fires the callbacks, so a slow callback never stalls forwarding.
type speechDetector struct {
	loudSince atomic.Int64 // unix ns: start of the current run of loud packets
	lastLoud  atomic.Int64 // unix ns: last loud packet; 0 = none yet
	speaking  bool         // owned by the room goroutine
}

func (d *speechDetector) observe(now int64, level uint8) {
	if level > speakingLevel {
		return
	}
	last := d.lastLoud.Load()
	if last == 0 || now-last > int64(speakingGap) {
		d.loudSince.Store(now)
	}
	d.lastLoud.Store(now)
}

// evaluate reports whether the speaking state changed at time now, and the
// new state.
func (d *speechDetector) evaluate(now int64) (changed, speaking bool) {
	last := d.lastLoud.Load()
	since := d.loudSince.Load()
	switch {
	case !d.speaking && last != 0 && now-last <= int64(speakingGap) && last-since >= int64(speakingOnAfter):
		d.speaking = true
		return true, true
	case d.speaking && now-last >= int64(speakingOffAfter):
		d.speaking = false
		return true, false
	}
	return false, d.speaking
}
