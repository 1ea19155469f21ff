package main

import (
	"fmt"
	"io"
	"time"

	"github.com/sotto-voice/sotto/token"
)

// runToken implements "sotto token": print a token for --room and --identity
// signed with --secret.
func runToken(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", "token --secret S --room R --identity I [--ttl 1h]", stderr)
	secret := fs.String("secret", "", "server secret the token is signed with (the serve --secret)")
	room := fs.String("room", "", "room the token admits to")
	identity := fs.String("identity", "", "participant identity")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *secret == "" || *room == "" || *identity == "" {
		fmt.Fprintln(stderr, "sotto token: --secret, --room and --identity are required")
		fs.Usage()
		return errUsage
	}
	if *ttl <= 0 {
		return fmt.Errorf("--ttl must be positive, got %v", *ttl)
	}
	tok, err := token.Mint([]byte(*secret), token.Claims{Room: *room, Identity: *identity, Expiry: time.Now().Add(*ttl)})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
