package pionlog_test

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/pion/logging"

	"github.com/sotto-voice/sotto/internal/logtest"
	"github.com/sotto-voice/sotto/internal/pionlog"
)

func TestLevels(t *testing.T) {
	var log logtest.Log
	l := pionlog.Factory(log.Logger(pionlog.LevelTrace)).NewLogger("ice")
	l.Trace("trace")
	l.Tracef("trace %d", 1)
	l.Debug("debug")
	l.Debugf("debug %d", 1)
	l.Info("info")
	l.Infof("info %d", 1)
	l.Warn("Discard request with wrong username")
	l.Warnf("Failed to handle decode ICE from %s: %v", "127.0.0.1:5000", errors.New("unexpected EOS"))
	l.Error("Failed to create network")
	l.Errorf("Failed to handle datagram: %v", errors.New("no allocation"))

	want := []struct {
		level slog.Level
		msg   string
	}{
		{pionlog.LevelTrace, "trace"},
		{pionlog.LevelTrace, "trace 1"},
		{slog.LevelDebug, "debug"},
		{slog.LevelDebug, "debug 1"},
		{slog.LevelDebug, "info"},
		{slog.LevelDebug, "info 1"},
		{slog.LevelWarn, "Discard request with wrong username"},
		{slog.LevelWarn, "Failed to handle decode ICE from 127.0.0.1:5000: unexpected EOS"},
		{slog.LevelWarn, "Failed to create network"},
		{slog.LevelWarn, "Failed to handle datagram: no allocation"},
	}
	got := log.Records(t)
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Level != w.level || got[i].Message != w.msg || got[i].Attrs["pion"] != "ice" {
			t.Errorf("record %d: %v %q %v; want %v %q pion=ice", i, got[i].Level, got[i].Message, got[i].Attrs, w.level, w.msg)
		}
	}
}

// TestHangUpIsDebug feeds the warnings pion logs while a call ends, as pion
// words them, and a few it logs about real trouble.
func TestHangUpIsDebug(t *testing.T) {
	for _, tc := range []struct {
		warn  func(logging.LeveledLogger)
		level slog.Level
	}{
		{func(l logging.LeveledLogger) {
			l.Warnf("Failed to read from candidate %s: %v", "udp4 host 127.0.0.1:5000", io.ErrClosedPipe)
		}, slog.LevelDebug},
		{func(l logging.LeveledLogger) {
			l.Warnf("Failed to read streaming packet: %s", &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed})
		}, slog.LevelDebug},
		{func(l logging.LeveledLogger) {
			l.Warnf("Failed to accept RTP %v", errors.New("stream is already closed"))
		}, slog.LevelDebug},
		{func(l logging.LeveledLogger) { l.Warnf("Failed to read streaming packet: %s", io.EOF) }, slog.LevelDebug},
		{func(l logging.LeveledLogger) { l.Errorf("Failed to read: %v", io.EOF) }, slog.LevelDebug},
		{func(l logging.LeveledLogger) {
			l.Warnf("Failed to read from candidate %s: %v", "tcp4 host 127.0.0.1:5000", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("i/o timeout")})
		}, slog.LevelDebug},
		{func(l logging.LeveledLogger) {
			l.Warnf("Failed to add remote candidate %s: %v", "127.0.0.1:5000", errors.New("the agent is closed"))
		}, slog.LevelDebug},
		{func(l logging.LeveledLogger) {
			l.Warnf("Failed to start manager: %s", errors.New("connecting canceled by caller"))
		}, slog.LevelDebug},
		{func(l logging.LeveledLogger) {
			l.Warnf("undeclaredMediaProcessor failed to open SrtpSession: %v", errors.New("the DTLS transport has not started yet"))
		}, slog.LevelDebug},
		{func(l logging.LeveledLogger) {
			l.Warnf("Warning: mux: no endpoint for packet starting with %d, adding to queue size(%d)", 21, 0)
		}, slog.LevelDebug},
		{func(l logging.LeveledLogger) {
			l.Warnf("Incoming unhandled RTCP ssrc(%d), OnTrack will not be fired", 1234)
		}, slog.LevelDebug},
		{func(l logging.LeveledLogger) {
			l.Warn("Failed to ping without candidate pairs. Connection is not possible yet.")
		}, slog.LevelDebug},

		// Still warnings: a dropped packet, unhandled media, a bad request.
		{func(l logging.LeveledLogger) {
			l.Warnf("Warning: mux: no endpoint for packet starting with %d, not adding to queue size(%d)", 21, 100)
		}, slog.LevelWarn},
		{func(l logging.LeveledLogger) {
			l.Errorf("Incoming unhandled RTP ssrc(%d), OnTrack will not be fired. %v", 1234, errors.New("mid not found"))
		}, slog.LevelWarn},
		{func(l logging.LeveledLogger) {
			l.Warnf("Discard request with broken integrity from (%s), %v", "127.0.0.1:5000", errors.New("integrity check failed"))
		}, slog.LevelWarn},
	} {
		var log logtest.Log
		tc.warn(pionlog.Factory(log.Logger(slog.LevelDebug)).NewLogger("pc"))
		got := log.Records(t)
		if len(got) != 1 || got[0].Level != tc.level {
			t.Errorf("%+v: want one record at %v", got, tc.level)
		}
		// With debug off, what was demoted is not logged at all.
		var quiet logtest.Log
		tc.warn(pionlog.Factory(quiet.Logger(slog.LevelInfo)).NewLogger("pc"))
		if n := len(quiet.Records(t)); n != 0 && tc.level == slog.LevelDebug || n != 1 && tc.level == slog.LevelWarn {
			t.Errorf("%+v: %d records with debug off", got, n)
		}
	}
}

// counted counts how often it is formatted.
type counted struct{ n *int }

func (c counted) String() string {
	*c.n++
	return "formatted"
}

// TestFormatsOnlyWhenEnabled: pion logs per packet at trace and debug; with
// those levels off, nothing is formatted, so the packet path pays nothing.
func TestFormatsOnlyWhenEnabled(t *testing.T) {
	var log logtest.Log
	l := pionlog.Factory(log.Logger(slog.LevelInfo)).NewLogger("srtp")
	var n int
	l.Tracef("%v", counted{&n})
	l.Debugf("%v", counted{&n})
	l.Infof("%v", counted{&n})
	if n != 0 || len(log.Records(t)) != 0 {
		t.Fatalf("formatted %d times, %d records logged, with debug off", n, len(log.Records(t)))
	}
	l.Warnf("%v", counted{&n})
	if n != 1 || len(log.Records(t)) != 1 {
		t.Fatalf("a warning formatted %d times, %d records logged", n, len(log.Records(t)))
	}
}
