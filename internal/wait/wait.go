package wait

import (
	"context"
	"testing"
	"time"
)

// Timeout bounds anything a test waits for: generous, because the machine
// running the tests is shared and loaded. Tests that wait for a browser or
// for a whole encrypted call allow a multiple of it.
const Timeout = 20 * time.Second

// For polls cond until it holds, and fails t if Timeout passes first.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	Until(ctx, t, what, cond)
}

// Until polls cond until it holds, and fails t if ctx ends first: for
// waits within the deadline of a whole test.
func Until(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	// Start quickly, then back off: some conditions are cheap atomic
	// loads, others evaluate script in a browser.
	pause := 5 * time.Millisecond
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(pause):
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
}
