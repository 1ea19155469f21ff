//go:build !linux

package server

// raiseFileLimit is Linux only; elsewhere the limit is unknown (0) and the
// connection cap is DefaultMaxConns.
func raiseFileLimit() (uint64, error) { return 0, nil }
