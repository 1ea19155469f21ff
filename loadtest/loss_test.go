package loadtest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestUplinkLossRepaired: every caller's socket drops 5 % of the packets it
// sends, over real UDP on loopback, for 20 s. The relay asks the
// publishers again for what it missed, and what the subscribers get after
// that repair must lack at most 0.5 % of the frames. The figures depend on
// the machine's timing, so the test prints them (go test -v) as a
// benchmark would; `sotto load --loss-up 0.05` measures the same against a
// real server.
func TestUplinkLossRepaired(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20 s run")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_, cfg := serverWithMetrics(t, "tok")
	cfg.Rooms, cfg.Callers, cfg.Duration, cfg.Ramp = 1, 3, 20*time.Second, 20
	cfg.LossUp = 0.05
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	rep.WriteTable(&table)
	t.Logf("5 %% uplink loss for %.0f s:\n%s", rep.DurationS, table.String())
	if rep.CallersJoined != 3 || rep.CallersFailed != 0 || rep.DecryptFailures != 0 {
		t.Fatalf("joined %d, failed %d, %d decrypt failures", rep.CallersJoined, rep.CallersFailed, rep.DecryptFailures)
	}
	if rep.InjectedDroppedUp == 0 || rep.ServerUpstreamRecovered == 0 {
		t.Fatalf("%d packets dropped, %d recovered: no loss was injected or repaired", rep.InjectedDroppedUp, rep.ServerUpstreamRecovered)
	}
	if rep.LossPct > 0.5 {
		t.Errorf("frame loss after repair %.3f %%, want at most 0.5 %%", rep.LossPct)
	}
}

func TestLossConfigErrors(t *testing.T) {
	for name, c := range map[string]Config{
		"negative":   {LossUp: -0.1},
		"above one":  {LossDown: 1.5},
		"relay-only": {LossUp: 0.05, RelayOnly: true},
	} {
		c.Secret = []byte("0123456789abcdef0123")
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
