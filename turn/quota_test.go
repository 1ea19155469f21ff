package turn

import (
	"net"
	"testing"
	"time"
)

func TestQuotaAccounting(t *testing.T) {
	q := newQuota(2, 3)
	now := time.Unix(1_700_000_000, 0)
	a := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1000}
	b := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1001}
	c := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1002}

	mustReserve := func(user string, src net.Addr, at time.Time) {
		t.Helper()
		if why, ok := q.reserve(user, src, at); !ok {
			t.Fatalf("reserve(%s, %s) refused: %s", user, src, why)
		}
	}
	mustReserve("u", a, now)
	q.created("u", a)
	mustReserve("u", b, now)
	if why, ok := q.reserve("u", c, now); ok || why != ReasonQuotaUser {
		t.Fatalf("third reservation for u: %v %q, want %s", ok, why, ReasonQuotaUser)
	}
	// b's allocation failed: its slot comes back.
	q.failed(b)
	mustReserve("u", c, now)
	q.created("u", c)
	mustReserve("v", b, now)
	if why, ok := q.reserve("w", &net.UDPAddr{Port: 9}, now); ok || why != ReasonQuotaTotal {
		t.Fatalf("fourth reservation: %v %q, want %s", ok, why, ReasonQuotaTotal)
	}
	// v's reservation never saw an outcome; after pendingTimeout it expires.
	later := now.Add(pendingTimeout + time.Second)
	mustReserve("w", &net.UDPAddr{Port: 9}, later)
	if q.active() != 3 {
		t.Fatalf("active %d, want 3", q.active())
	}
	q.deleted("u")
	q.deleted("u")
	if why, ok := q.reserve("u", a, later); !ok {
		t.Fatalf("u after deletions: refused %s", why)
	}
	// A creation without reservation (should not happen) still counts.
	q.created("x", &net.UDPAddr{Port: 7})
	if q.active() != 3 { // w (pending), u, x
		t.Fatalf("active %d, want 3", q.active())
	}
}
