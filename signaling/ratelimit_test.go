package signaling

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestIPLimiter(t *testing.T) {
	l := newIPLimiter(1, 2) // one per second, burst of two
	t0 := time.Unix(1000, 0)
	allow := func(ip string, at time.Time) bool {
		ok, _ := l.allow(ip, at)
		return ok
	}
	if !allow("a", t0) || !allow("a", t0) {
		t.Fatal("burst of two refused")
	}
	if ok, wait := l.allow("a", t0.Add(250*time.Millisecond)); ok || wait != 750*time.Millisecond {
		t.Fatalf("third request: ok %v, wait %v; want refused for 750ms", ok, wait)
	}
	if !allow("b", t0) {
		t.Fatal("another address shares a's bucket")
	}
	if !allow("a", t0.Add(1100*time.Millisecond)) {
		t.Fatal("bucket did not refill")
	}
	for i := range maxBuckets {
		allow(string(rune(i))+"x", t0)
	}
	if len(l.buckets) > maxBuckets {
		t.Fatalf("%d buckets, bound %d", len(l.buckets), maxBuckets)
	}
	if allow("late", t0) {
		t.Fatal("a new address was admitted past the bound while no bucket had refilled")
	}
	// Once buckets have refilled they are forgotten to make room.
	if !allow("new", t0.Add(time.Hour)) || len(l.buckets) > maxBuckets {
		t.Fatalf("new address refused after refill (%d buckets)", len(l.buckets))
	}
}

func TestClientIP(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:5000":                "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443":    "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443":    "2001:db8:1:2::/64",
		"not-an-address":                "not-an-address",
		"[::ffff:192.0.2.9]:1":          "192.0.2.9",
		"[fe80::1%eth0]:1":              "fe80::1%eth0",
		"[2001:db8:aaaa:bbbb::9]:65535": "2001:db8:aaaa:bbbb::/64",
	} {
		r := httptest.NewRequest(http.MethodPost, "/v1/calls", nil)
		r.RemoteAddr = addr
		if got := clientIP(r); got != want {
			t.Errorf("clientIP(%s) = %q, want %q", addr, got, want)
		}
	}
}
