package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sotto-voice/sotto/token"
)

// The development secret lets "sotto serve" run without --secret and
// "sotto token" and "sotto load" mint tokens it accepts, across restarts:
// 32 random bytes, hex, in a file only its owner can read.

// devSecretPath is the development secret's file: sotto/dev-secret in the
// user's configuration directory ($XDG_CONFIG_HOME or ~/.config on Linux).
func devSecretPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no directory for a development secret (%w): pass --secret", err)
	}
	return filepath.Join(dir, "sotto", "dev-secret"), nil
}

// devSecret returns the development secret and its file, creating both on
// first use.
func devSecret() (secret, path string, err error) {
	if path, err = devSecretPath(); err != nil {
		return "", "", err
	}
	secret, err = readDevSecret(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return secret, path, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", "", fmt.Errorf("development secret: %w", err)
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	secret = hex.EncodeToString(b[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another sotto made it first: use theirs.
		secret, err = readDevSecret(path)
		return secret, path, err
	}
	if err != nil {
		return "", "", fmt.Errorf("development secret: %w", err)
	}
	_, err = f.WriteString(secret + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", "", fmt.Errorf("development secret: %w", err)
	}
	return secret, path, nil
}

func readDevSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) < token.MinSecretLen {
		return "", fmt.Errorf("development secret in %s: shorter than %d bytes", path, token.MinSecretLen)
	}
	return secret, nil
}

// secretOrDev is flagValue, or else the development secret "sotto serve"
// made, for the commands that mint tokens.
func secretOrDev(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	path, err := devSecretPath()
	if err != nil {
		return "", err
	}
	secret, err := readDevSecret(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no --secret (SOTTO_SECRET) given and no development secret in %s: start sotto serve without --secret once, or pass the server's secret", path)
	}
	return secret, err
}
