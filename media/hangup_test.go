package media

import (
	"log/slog"
	"testing"

	"github.com/sotto-voice/sotto/internal/logtest"
	"github.com/sotto-voice/sotto/internal/wait"
)

// TestHangUpLogsNoWarning: hanging up is the ordinary end of a call, so the
// relay's log, pion's lines included, says nothing above info about it,
// whether a participant leaves through the API over UDP or over TCP, closes
// its connection without a word, or the relay itself shuts down.
func TestHangUpLogsNoWarning(t *testing.T) {
	var log logtest.Log
	e, err := NewEngine(Config{ListenIP: "127.0.0.1", Logger: log.Logger(slog.LevelDebug)})
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	r := e.NewRoom("hang-up", nil)
	alice := joinClient(t, r, "alice", clientOptions{})
	bob := joinClient(t, r, "bob", clientOptions{})
	carol := joinClient(t, r, "carol", clientOptions{tcpOnly: true})
	dave := joinClient(t, r, "dave", clientOptions{})
	alice.waitReceiving(t, 25, "bob", "carol", "dave")

	// Only what the hang-ups log counts, not the setup before them.
	start := len(log.Records(t))
	bob.leave()
	carol.leave()
	dave.close()
	wait.For(t, "bob, carol and dave to be gone", func() bool { return e.Stats().Peers == 1 })
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	alice.close()

	records := log.Records(t)[start:]
	for _, r := range records {
		if r.Level > slog.LevelInfo {
			t.Errorf("hang-up logged %v %q %v", r.Level, r.Message, r.Attrs)
		}
	}
	if len(records) == 0 {
		t.Fatal("nothing logged at debug during the hang-ups: the check above saw nothing")
	}
}
