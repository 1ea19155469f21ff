package loadtest

import (
	"bytes"
	"testing"
	"time"
)

func TestDefaultClipIsTwentyMillisecondOpus(t *testing.T) {
	packets, err := OpusPackets(DefaultClip)
	if err != nil {
		t.Fatal(err)
	}
	// 6 s of 20 ms frames, plus one for the encoder's pre-skip.
	if len(packets) != 301 {
		t.Errorf("%d packets, want 301", len(packets))
	}
	// Latency lookups tell frames apart by hash: the clip's must differ.
	seen := map[uint64]int{}
	for i, p := range packets {
		if j, dup := seen[hashFrame(p)]; dup {
			t.Errorf("packets %d and %d hash alike", j, i)
		}
		seen[hashFrame(p)] = i
	}
}

func TestOpusPacketsRejectsBadInput(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty":     nil,
		"not ogg":   []byte("RIFF....WAVEfmt "),
		"truncated": DefaultClip[:len(DefaultClip)/2],
		"no header": DefaultClip[bytes.Index(DefaultClip[100:], []byte("OggS"))+100:],
	} {
		if _, err := OpusPackets(in); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A 40 ms packet (SILK config 2, one frame) is refused: callers send
	// one 20 ms frame per tick.
	if d, err := packetDuration([]byte{2 << 3}); err != nil || d != 40*time.Millisecond {
		t.Errorf("config 2: %v %v, want 40ms", d, err)
	}
	if d, _ := packetDuration([]byte{31<<3 | 3, 3}); d != 60*time.Millisecond {
		t.Errorf("CELT 20 ms x 3 (code 3): %v", d)
	}
}

func TestExtend(t *testing.T) {
	for _, c := range []struct {
		low   uint16
		count uint64
		want  uint64
	}{
		{5, 0, 5},
		{5, 10, 5},
		{65535, 65537, 65535},
		{0, 65537, 65536},
		{1, 65537, 1}, // not sent yet: the previous wrap
		{3, 3*65536 + 10, 3*65536 + 3},
	} {
		if got := extend(c.low, c.count); got != c.want {
			t.Errorf("extend(%d, %d) = %d, want %d", c.low, c.count, got, c.want)
		}
	}
}

func TestPairFindsFramesThroughTheRelaysOffset(t *testing.T) {
	s := newSender("p_a", 0)
	hashes := []uint64{11, 22, 33, 44, 55, 66}
	base := time.Unix(1000, 0).UnixNano()
	for n, h := range hashes {
		s.record(uint64(n), h, base+int64(n)*int64(FrameDuration))
	}
	p := &pair{from: s}
	const offset = 40000 // the relay renumbered the leg
	// Frame 1 arrives 3 ms after it was sent; frame 2 is lost; frame 3
	// arrives 5 ms late.
	d, ok := p.frame(offset+1, 960, 22, 0, base+int64(FrameDuration)+3e6)
	if !ok || d != 3*time.Millisecond {
		t.Fatalf("frame 1: %v %v", d, ok)
	}
	d, ok = p.frame(offset+3, 3*960, 44, 0, base+3*int64(FrameDuration)+5e6)
	if !ok || d != 5*time.Millisecond {
		t.Fatalf("frame 3: %v %v", d, ok)
	}
	if p.first != 1 || p.highest != 3 || p.received != 2 || p.offset != offset {
		t.Errorf("pair %+v", p)
	}
	// A frame that was never sent is counted, not placed.
	if _, ok := p.frame(offset+4, 4*960, 999, 0, base); ok || p.unmatched != 1 {
		t.Errorf("forged frame matched (unmatched %d)", p.unmatched)
	}
	// The relay changes the offset (leg reused): the pair recalibrates.
	if d, ok := p.frame(7, 5*960, 66, 0, base+5*int64(FrameDuration)+1e6); !ok || d != time.Millisecond {
		t.Errorf("after renumbering: %v %v", d, ok)
	}
	if got := s.sentBetween(base+int64(FrameDuration), base+3*int64(FrameDuration)); got != 3 {
		t.Errorf("sentBetween = %d, want 3", got)
	}
	if n, ok := s.lastSentBefore(base + 2*int64(FrameDuration) + 1); !ok || n != 2 {
		t.Errorf("lastSentBefore = %d %v, want 2", n, ok)
	}
}

func TestHistogramPercentiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 100; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	p, n := h.percentiles()
	if n != 100 {
		t.Fatalf("%d samples", n)
	}
	// Bucket upper edges: never below the true value, at most 0.1 ms above.
	for name, c := range map[string][2]float64{"p50": {p.P50, 50}, "p95": {p.P95, 95}, "p99": {p.P99, 99}, "max": {p.Max, 100}} {
		if c[0] < c[1] || c[0] > c[1]+0.1001 {
			t.Errorf("%s = %v, want %v", name, c[0], c[1])
		}
	}
	if j := percentilesOf([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond}); j.P50 != 2 || j.Max != 3 {
		t.Errorf("percentilesOf = %+v", j)
	}
}
