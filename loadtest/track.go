package loadtest

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// ringSize is how many sent frames a sender remembers for latency lookups:
// 10 s at 50 frames/s, far more than any frame takes to arrive.
const ringSize = 512

// sentFrame is one ring slot. n is written last and read first and last
// (a seqlock), so a receiver never takes a half-written slot as valid.
type sentFrame struct {
	n    atomic.Uint64 // frame number + 1; 0 = empty
	hash atomic.Uint64
	at   atomic.Int64 // send time, unix nanoseconds
}

// sender is one participation of a caller (a join), as its peers see it.
// Only the scheduler goroutine that owns the caller writes to it.
type sender struct {
	id       string // participant ID
	joinedAt int64  // when its join returned, unix nanoseconds
	ring     [ringSize]sentFrame
	count    atomic.Uint64 // frames sent

	mu    sync.Mutex
	times []int64 // send time of every frame, for loss accounting at the end
	left  int64   // when it stopped sending, unix nanoseconds; 0 = still on
}

func newSender(id string, joinedAt int64) *sender {
	return &sender{id: id, joinedAt: joinedAt, times: make([]int64, 0, 3000)}
}

// record remembers frame n, just before it is written.
func (s *sender) record(n uint64, hash uint64, at int64) {
	slot := &s.ring[n%ringSize]
	slot.n.Store(0)
	slot.hash.Store(hash)
	slot.at.Store(at)
	slot.n.Store(n + 1)
	s.count.Store(n + 1)
	s.mu.Lock()
	s.times = append(s.times, at)
	s.mu.Unlock()
}

// lookup returns the send time of frame n if the ring still holds it with
// this payload hash.
func (s *sender) lookup(n uint64, hash uint64) (int64, bool) {
	slot := &s.ring[n%ringSize]
	if slot.n.Load() != n+1 {
		return 0, false
	}
	h, at := slot.hash.Load(), slot.at.Load()
	if slot.n.Load() != n+1 || h != hash {
		return 0, false
	}
	return at, true
}

// find searches the ring, newest first, for a frame with this payload
// hash: how a receiver learns the relay's sequence offset for this sender.
func (s *sender) find(hash uint64) (n uint64, at int64, ok bool) {
	last := s.count.Load()
	for i := uint64(0); i < ringSize && i < last; i++ {
		n := last - 1 - i
		if at, ok := s.lookup(n, hash); ok {
			return n, at, true
		}
	}
	return 0, 0, false
}

// sentBetween counts the frames sent in [from, to] (unix nanoseconds).
func (s *sender) sentBetween(from, to int64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	lo := sort.Search(len(s.times), func(i int) bool { return s.times[i] >= from })
	hi := sort.Search(len(s.times), func(i int) bool { return s.times[i] > to })
	if hi < lo {
		return 0
	}
	return uint64(hi - lo)
}

// lastSentBefore returns the number of the last frame sent at or before t,
// or false if none was.
func (s *sender) lastSentBefore(t int64) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.times), func(i int) bool { return s.times[i] > t })
	if i == 0 {
		return 0, false
	}
	return uint64(i - 1), true
}

// pair is what one receiver knows about one sender. Only the receiver's
// goroutine touches it.
type pair struct {
	from       *sender
	calibrated bool
	offset     uint16 // RTP seq - frame number (mod 2^16)
	first      uint64 // first frame number received
	highest    uint64
	received   uint64
	unmatched  uint64 // frames not found in the sender's ring
	joinedAt   int64  // when the receiver started receiving, unix ns

	// RFC 3550 interarrival jitter, in RTP units (48 kHz).
	jitter     float64
	lastArrive int64
	lastTS     uint32
	haveLast   bool
}

// frame accounts one received frame and returns its latency, if the frame
// was found among those sent.
func (p *pair) frame(seq uint16, ts uint32, hash uint64, arrived, now int64) (time.Duration, bool) {
	p.received++
	if p.haveLast {
		d := float64(arrived-p.lastArrive)*48000/1e9 - float64(int32(ts-p.lastTS))
		p.jitter += (math.Abs(d) - p.jitter) / 16
	}
	p.lastArrive, p.lastTS, p.haveLast = arrived, ts, true

	var n uint64
	var at int64
	ok := false
	if p.calibrated {
		n = extend(seq-p.offset, p.from.count.Load())
		at, ok = p.from.lookup(n, hash)
	}
	if !ok {
		n, at, ok = p.from.find(hash)
		if !ok {
			p.unmatched++
			return 0, false
		}
		p.offset = seq - uint16(n)
		p.calibrated = true
	}
	if p.received-p.unmatched == 1 {
		p.first, p.highest = n, n
	}
	p.first = min(p.first, n)
	p.highest = max(p.highest, n)
	return time.Duration(now - at), true
}

// extend turns a 16-bit frame number into the full one closest below the
// sender's count.
func extend(low uint16, count uint64) uint64 {
	if count == 0 {
		return uint64(low)
	}
	top := count - 1
	n := top&^0xffff | uint64(low)
	if n > top {
		if n < 1<<16 {
			return uint64(low)
		}
		n -= 1 << 16
	}
	return n
}

// histogram counts latencies in 0.1 ms buckets up to 2 s, the last bucket
// holding everything longer. Safe for concurrent use.
type histogram struct {
	buckets [20001]atomic.Uint64
	max     atomic.Int64
}

const bucketWidth = 100 * time.Microsecond

func (h *histogram) add(d time.Duration) {
	i := int(d / bucketWidth)
	i = max(0, min(i, len(h.buckets)-1))
	h.buckets[i].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// Percentiles summarises a distribution, in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func (h *histogram) percentiles() (Percentiles, uint64) {
	var total uint64
	counts := make([]uint64, len(h.buckets))
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return Percentiles{}, 0
	}
	at := func(q float64) float64 {
		want := uint64(math.Ceil(q * float64(total)))
		var seen uint64
		for i, c := range counts {
			seen += c
			if seen >= want {
				// Upper edge of the bucket: never flatter than the truth.
				return ms(time.Duration(i+1) * bucketWidth)
			}
		}
		return ms(time.Duration(len(counts)) * bucketWidth)
	}
	return Percentiles{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: ms(time.Duration(h.max.Load()))}, total
}

// counts returns the histogram's buckets (for plots).
func (h *histogram) counts() []uint64 {
	c := make([]uint64, len(h.buckets))
	for i := range h.buckets {
		c[i] = h.buckets[i].Load()
	}
	return c
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// percentilesOf summarises a small sample (join times).
func percentilesOf(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return ms(s[max(0, min(i, len(s)-1))])
	}
	return Percentiles{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: ms(s[len(s)-1])}
}
