package pionlog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pion/logging"
)

// LevelTrace is below slog's debug: pion traces per packet, which even a
// debugging operator rarely wants.
const LevelTrace = slog.LevelDebug - 4

// benign are parts of the messages pion warns with about the ordinary end
// and start of a connection: a hang-up races the packet, RTCP and ICE
// goroutines still reading or writing the transports being torn down, and
// each reports what it finds closed; packets and reports race the setup of
// an endpoint or the removal of a track. These are expected, so they log at
// debug; any other pion warning stays a warning.
var benign = []string{
	"closed pipe",                            // io.ErrClosedPipe from pion's buffers and muxes
	"use of closed network connection",       // net.ErrClosed from the sockets
	"stream is already closed",               // SRTP sessions closing under their readers
	"EOF",                                    // io.EOF from a transport that ended
	"i/o timeout",                            // the deadline ICE sets to now to abort a closing candidate's read
	"the agent is closed",                    // ice.ErrClosed: an answer or candidate racing the close
	"connecting canceled by caller",          // a connection closed before ICE connected
	"the DTLS transport has not started yet", // a connection closed before DTLS started
	", adding to queue",                      // a packet racing its endpoint's setup or teardown, kept for it
	"Incoming unhandled RTCP",                // reports on a track the relay removed as its sender left
	"Connection is not possible yet",         // ICE checks starting before the remote candidates are in
}

// Factory returns a pion logger factory writing to log, each logger tagged
// with its pion scope. Pion's trace logs at LevelTrace; its debug and info
// log at debug, as pion narrates every state change there; its warnings
// and errors log as warnings, since they concern one connection or one
// client, which the process survives, except the benign ones above, which
// log at debug.
func Factory(log *slog.Logger) logging.LoggerFactory { return factory{log} }

type factory struct{ log *slog.Logger }

func (f factory) NewLogger(scope string) logging.LeveledLogger {
	return logger{f.log.With("pion", scope)}
}

type logger struct{ log *slog.Logger }

// logf formats only when level is enabled, so the hot paths pion traces on
// cost nothing when debugging is off.
func (l logger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if level >= slog.LevelWarn && isBenign(msg) {
		level = slog.LevelDebug
		if !l.log.Enabled(ctx, level) {
			return
		}
	}
	l.log.Log(ctx, level, msg)
}

func isBenign(msg string) bool {
	for _, s := range benign {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func (l logger) Trace(msg string)                  { l.logf(LevelTrace, "%s", msg) }
func (l logger) Tracef(format string, args ...any) { l.logf(LevelTrace, format, args...) }
func (l logger) Debug(msg string)                  { l.logf(slog.LevelDebug, "%s", msg) }
func (l logger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l logger) Info(msg string)                   { l.logf(slog.LevelDebug, "%s", msg) }
func (l logger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l logger) Warn(msg string)                   { l.logf(slog.LevelWarn, "%s", msg) }
func (l logger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args...) }
func (l logger) Error(msg string)                  { l.logf(slog.LevelWarn, "%s", msg) }
func (l logger) Errorf(format string, args ...any) { l.logf(slog.LevelWarn, format, args...) }
