package media

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLoggerFactory routes pion's logs into the engine's slog logger, so
// they share its handler and level. Pion's trace and debug both map to
// slog's debug, and so does info: pion narrates every state change there.
type pionLoggerFactory struct{ log *slog.Logger }

func (f *pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return &pionLogger{log: f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l *pionLogger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.Log(ctx, level, fmt.Sprintf(format, args...))
}

func (l *pionLogger) Trace(msg string)                  { l.log.Debug(msg) }
func (l *pionLogger) Tracef(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l *pionLogger) Debug(msg string)                  { l.log.Debug(msg) }
func (l *pionLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l *pionLogger) Info(msg string)                   { l.log.Debug(msg) }
func (l *pionLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l *pionLogger) Warn(msg string)                   { l.log.Warn(msg) }
func (l *pionLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args...) }
func (l *pionLogger) Error(msg string)                  { l.log.Error(msg) }
func (l *pionLogger) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args...) }
