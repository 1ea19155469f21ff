package invariant

import (
	"os/exec"
	"strings"
	"testing"
)

// serverPackages must not depend, directly or transitively, on e2ee.
// server assembles the others, so it covers everything "sotto serve" runs;
// token is among them: the server mints and verifies with it; store too: it
// keeps the server's state; cluster places rooms across nodes. The binary
// itself (./cmd/sotto) does reach client and e2ee, but only through "sotto
// load", whose synthetic callers encrypt like real ones.
var serverPackages = []string{"./server/...", "./signaling/...", "./media/...", "./turn/...", "./token/...", "./store/...", "./cluster/...", "./internal/connlimit/..."}

func TestServerNeverImportsE2EE(t *testing.T) {
	module := goList(t, "-m")
	forbidden := module + "/e2ee"
	for _, pattern := range serverPackages {
		for _, dep := range strings.Fields(goList(t, "-deps", "-test", pattern)) {
			if dep == forbidden || strings.HasPrefix(dep, forbidden+"/") {
				t.Errorf("%s depends on %s: the relay must be unable to decrypt by construction", pattern, dep)
			}
		}
	}
}

// TestCheckSeesE2EE guards the check itself: if go list stopped reporting
// dependencies (a renamed module, a broken pattern), the test above would
// pass vacuously.
func TestCheckSeesE2EE(t *testing.T) {
	module := goList(t, "-m")
	deps := strings.Fields(goList(t, "-deps", "./e2ee/..."))
	found := false
	for _, dep := range deps {
		if dep == module+"/e2ee" {
			found = true
		}
	}
	if !found {
		t.Fatalf("go list -deps ./e2ee/... did not list %s/e2ee; got %d packages", module, len(deps))
	}
}

func goList(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	return strings.TrimSpace(string(out))
}
