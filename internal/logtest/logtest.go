package logtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
)

// Log collects the records of the loggers it hands out.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Logger returns a logger that writes its records at level and above to l.
func (l *Log) Logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(writer{l}, &slog.HandlerOptions{Level: level}))
}

// Record is one logged record.
type Record struct {
	Level   slog.Level
	Message string
	Attrs   map[string]any // by key; groups nest as maps
}

// Records returns what was logged so far, oldest first.
func (l *Log) Records(t testing.TB) []Record {
	t.Helper()
	l.mu.Lock()
	data := bytes.Clone(l.buf.Bytes())
	l.mu.Unlock()
	var records []Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var attrs map[string]any
		if err := json.Unmarshal(sc.Bytes(), &attrs); err != nil {
			t.Fatalf("logtest: record %q: %v", sc.Text(), err)
		}
		var r Record
		if s, ok := attrs[slog.LevelKey].(string); !ok || r.Level.UnmarshalText([]byte(s)) != nil {
			t.Fatalf("logtest: record without a level: %s", sc.Text())
		}
		r.Message, _ = attrs[slog.MessageKey].(string)
		delete(attrs, slog.TimeKey)
		delete(attrs, slog.LevelKey)
		delete(attrs, slog.MessageKey)
		r.Attrs = attrs
		records = append(records, r)
	}
	return records
}

// writer serializes the handler's writes with Records' reads.
type writer struct{ l *Log }

func (w writer) Write(p []byte) (int, error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	return w.l.buf.Write(p)
}
