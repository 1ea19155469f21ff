package main

import (
	"fmt"
	"io"
	"time"

	"github.com/sotto-voice/sotto/token"
)

// runToken implements "sotto token": print a token for --room and --identity
// signed with --secret, or with the development secret.
func runToken(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", "token [--secret S] --room R --identity I [--ttl 1h]", stderr)
	secret := fs.String("secret", "", "server secret the token is signed with, the serve --secret (default: the development secret)")
	room := fs.String("room", "", "room the token admits to")
	identity := fs.String("identity", "", "participant identity")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *room == "" || *identity == "" {
		fmt.Fprintln(stderr, "sotto token: --room and --identity are required")
		fs.Usage()
		return errUsage
	}
	if *ttl <= 0 {
		return fmt.Errorf("--ttl must be positive, got %v", *ttl)
	}
	key, err := secretOrDev(*secret)
	if err != nil {
		fmt.Fprintf(stderr, "sotto token: %v\n", err)
		return errUsage
	}
	tok, err := token.Mint([]byte(key), token.Claims{Room: *room, Identity: *identity, Expiry: time.Now().Add(*ttl)})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
