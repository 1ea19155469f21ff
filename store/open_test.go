package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()
	if s, err := Open(ctx, Options{}); err != nil {
		t.Fatal(err)
	} else if _, ok := s.(*Memory); !ok {
		t.Fatalf("Open with no options: %T, want memory", s)
	}
	dir := filepath.Join(t.TempDir(), "state", "nested")
	s, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*Bolt); !ok {
		t.Fatalf("Open with a data dir: %T, want bolt", s)
	}
	info, err := os.Stat(filepath.Join(dir, DataFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Fatalf("store file mode %v, want 0600", perm)
	}
	if _, err := Open(ctx, Options{DataDir: dir, RedisURL: "redis://127.0.0.1:6379/0"}); err == nil {
		t.Fatal("Open accepted both a data dir and Redis")
	}
}

func TestOptionsString(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{}, "memory"},
		{Options{DataDir: "/var/lib/sotto"}, "file /var/lib/sotto/sotto.db"},
		{Options{RedisURL: "redis://u:secret@h:6379/2"}, "redis redis://u:xxxxx@h:6379/2"},
	} {
		got := c.o.String()
		if !strings.HasPrefix(got, c.want) || strings.Contains(got, "secret") {
			t.Errorf("%+v: %q, want %q...", c.o, got, c.want)
		}
	}
}
