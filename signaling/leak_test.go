package signaling

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/wait"
)

// TestMain fails the run if goroutines of this package outlive the tests:
// every test shuts its server down, so none may remain.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitForPackageGoroutines(wait.Timeout); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines of package signaling still running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// waitForPackageGoroutines waits until no goroutine runs code of this
// package (other than this check) and returns the stacks of any that do.
func waitForPackageGoroutines(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "sotto/signaling.") && !strings.Contains(g, "waitForPackageGoroutines") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
