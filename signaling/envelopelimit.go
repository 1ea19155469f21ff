package signaling

import (
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// envelopeBurstSeconds is how many seconds' worth of envelopes a sender may
// send at once after a quiet spell: a rekey to every peer of a full room, or
// a burst of file chunks, goes through whole.
const envelopeBurstSeconds = 2

// envelopeLimit meters one sender's envelopes with two token buckets, one
// for messages and one for payload bytes.
type envelopeLimit struct {
	msgs, bytes *rate.Limiter
}

func newEnvelopeLimit(cfg *Config) envelopeLimit {
	return envelopeLimit{
		msgs: rate.NewLimiter(rate.Limit(cfg.EnvelopesPerSecond), envelopeBurstSeconds*cfg.EnvelopesPerSecond),
		// A burst below one envelope of the largest size would refuse it forever.
		bytes: rate.NewLimiter(rate.Limit(cfg.EnvelopeBytesPerSecond),
			max(envelopeBurstSeconds*cfg.EnvelopeBytesPerSecond, cfg.MaxEnvelopeBytes)),
	}
}

// allow takes the tokens for an envelope of n payload bytes, or says which
// rate the envelope exceeds. An envelope refused for its bytes still spends
// a message token: attempts count, not only deliveries.
func (l envelopeLimit) allow(now time.Time, n int) (refusal string, ok bool) {
	if !l.msgs.AllowN(now, 1) {
		return fmt.Sprintf("more than %.0f envelopes per second", float64(l.msgs.Limit())), false
	}
	if !l.bytes.AllowN(now, n) {
		return fmt.Sprintf("more than %.0f envelope bytes per second", float64(l.bytes.Limit())), false
	}
	return "", true
}
