package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// DataFile is the on-disk store's file inside Options.DataDir.
const DataFile = "sotto.db"

// Options chooses a store: Redis when RedisURL is set, a file in DataDir
// when that is, memory otherwise.
type Options struct {
	// DataDir keeps the state of a single node on disk, in DataFile (flag
	// --data-dir, SOTTO_DATA_DIR). The directory is created if missing.
	DataDir string
	// RedisURL (redis://[user:password@]host:port/db, or rediss:// for
	// TLS) shares the state between the nodes of a cluster (flag --redis,
	// SOTTO_REDIS).
	RedisURL string
	// Now is the clock of the memory and on-disk stores' expiries; nil is
	// time.Now. Redis keeps its own time.
	Now func() time.Time
}

// Open opens the store o chooses. Opening Redis checks that it answers; a
// file is locked against a second process.
func Open(ctx context.Context, o Options) (Store, error) {
	switch {
	case o.DataDir != "" && o.RedisURL != "":
		return nil, errors.New("store: a data dir and Redis exclude each other; choose one")
	case o.RedisURL != "":
		return OpenRedis(ctx, o.RedisURL)
	case o.DataDir != "":
		if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("store: create data dir: %w", err)
		}
		return OpenBolt(filepath.Join(o.DataDir, DataFile), o.Now)
	default:
		return NewMemory(o.Now), nil
	}
}

// String says which store o chooses and where it keeps its state, for
// logs; a Redis password is left out.
func (o Options) String() string {
	switch {
	case o.RedisURL != "":
		u, err := url.Parse(o.RedisURL)
		if err != nil {
			return "redis (unparsable URL)"
		}
		return "redis " + u.Redacted()
	case o.DataDir != "":
		return "file " + filepath.Join(o.DataDir, DataFile)
	default:
		return "memory (nothing survives the process)"
	}
}

// clock returns now, or time.Now if nil.
func clock(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}
