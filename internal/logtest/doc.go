// Package logtest collects what code under test logs through log/slog, from
// any of its goroutines, so that tests can assert on levels, messages and
// attributes.
package logtest
