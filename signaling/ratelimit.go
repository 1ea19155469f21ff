package signaling

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sotto-voice/sotto/api"
)

// Routes that mint tokens without one (creating a call, redeeming an
// invite) are limited per client address with a token bucket. The buckets
// are this node's: they bound the load on it, so behind N nodes a client
// may get up to N times the allowance (see the store package's doc).

// limit answers false, after writing a rate_limited error, when the
// client's IP has used up its allowance.
func (s *Server) limit(w http.ResponseWriter, r *http.Request) bool {
	ok, wait := s.calls.limiter.allow(clientIP(r), s.now())
	if ok {
		return true
	}
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, errorf(api.CodeRateLimited, "too many calls from this address; try again in %d s", secs))
	return false
}

// clientIP is the address the request came from, as a rate-limit key: the
// IPv4 address, or the /64 of an IPv6 address (one subscriber's usual
// allocation). Forwarding headers are not trusted: behind a proxy every
// client shares the proxy's allowance.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// ipLimiter is a token bucket per client IP.
type ipLimiter struct {
	rate  float64 // tokens per second
	burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the limiter's memory. Past it, refilled buckets are
// forgotten, and if none has refilled new addresses are refused until some
// do.
const maxBuckets = 10000

func newIPLimiter(rate, burst float64) *ipLimiter {
	return &ipLimiter{rate: rate, burst: burst, buckets: make(map[string]*bucket)}
}

// allow takes one token from ip's bucket if there is one; otherwise it
// says how long until there is.
func (l *ipLimiter) allow(ip string, now time.Time) (ok bool, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[ip]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.pruneLocked(now)
			if len(l.buckets) >= maxBuckets {
				return false, time.Duration(float64(time.Second) / l.rate)
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[ip] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// pruneLocked forgets buckets that have refilled: they behave like new ones.
func (l *ipLimiter) pruneLocked(now time.Time) {
	for ip, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, ip)
		}
	}
}
