package wait_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/wait"
)

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	go func() {
		time.Sleep(50 * time.Millisecond)
		n.Store(1)
	}()
	start := time.Now()
	wait.For(t, "n to be set", func() bool { return n.Load() == 1 })
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("returned after %v, before the condition held", d)
	}
}

// TestUntilFailsWhenTheContextEnds runs itself again in a child process, in
// which Until must fail the test, naming what it waited for.
func TestUntilFailsWhenTheContextEnds(t *testing.T) {
	if os.Getenv("WAIT_TEST_CHILD") != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		wait.Until(ctx, t, "the impossible", func() bool { return false })
		t.Log("Until returned")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUntilFailsWhenTheContextEnds$", "-test.v")
	cmd.Env = append(os.Environ(), "WAIT_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "timed out waiting for the impossible") || strings.Contains(string(out), "Until returned") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
