package main

import (
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sotto-voice/sotto/server"
	"github.com/sotto-voice/sotto/turn"
)

// turnFlags are the TURN flags of "sotto serve" that need parsing into a
// server.TURNConfig; the others are set on it directly. The TURN server
// listens where media does (--media-ip) and advertises the first IPv4
// --public-ip.
type turnFlags struct {
	on         bool
	secret     string // "" = derived from --secret
	relayPorts string
	allow      listFlag // CIDRs admitted as peers despite the relay policy
}

func (t *turnFlags) register(fs *flag.FlagSet, c *server.TURNConfig) {
	fs.BoolVar(&t.on, "turn", true, "run the embedded TURN server (UDP and TCP on --turn-port, TLS on --turn-tls-port with --tls-cert)")
	fs.IntVar(&c.Port, "turn-port", turn.DefaultPort, "TURN port for UDP and TCP (0 picks a free port)")
	fs.IntVar(&c.TLSPort, "turn-tls-port", turn.DefaultTLSPort, "TURN-over-TLS port, served only with --tls-cert/--tls-key")
	fs.Var((*listFlag)(&c.URLs), "turn-url", "external STUN/TURN server for clients instead of the embedded one, e.g. turn:turn.example.com:3478?transport=udp (repeatable or comma-separated; needs --turn-secret)")
	fs.StringVar(&t.secret, "turn-secret", "", "TURN REST secret, at least 16 bytes: an external TURN server's static-auth-secret (default: derived from --secret)")
	fs.StringVar(&c.Host, "turn-host", "", "host name clients use for TURN (default: the certificate's name for turns:, else the public IP, else the media IP)")
	fs.StringVar(&t.relayPorts, "turn-relay-ports", fmt.Sprintf("%d-%d", turn.DefaultRelayPortMin, turn.DefaultRelayPortMax), "UDP port range of relayed addresses (open it in the firewall)")
	fs.IntVar(&c.MaxAllocationsPerUser, "turn-max-allocations-per-user", turn.DefaultMaxAllocationsPerUser, "TURN allocations per credential")
	fs.IntVar(&c.MaxAllocations, "turn-max-allocations", turn.DefaultMaxAllocations, "TURN allocations on the server")
	fs.Var(&t.allow, "turn-allow", "CIDR of peers TURN may relay to although private or loopback, e.g. 10.0.0.0/8 for callers on a private network (repeatable or comma-separated)")
	fs.DurationVar(&c.CredentialTTL, "turn-credential-ttl", turn.DefaultCredentialTTL, fmt.Sprintf("lifetime of the TURN credentials in a join response; relayed calls longer than this must rejoin (at most %v)", turn.MaxCredentialTTL))
}

// apply puts the parsed flags into c; server.Config.Validate checks the
// values.
func (t *turnFlags) apply(c *server.TURNConfig) error {
	c.Off = !t.on
	if t.secret != "" {
		c.Secret = []byte(t.secret)
	}
	var err error
	if c.RelayPortMin, c.RelayPortMax, err = parsePortRange(t.relayPorts); err != nil {
		return fmt.Errorf("--turn-relay-ports: %w", err)
	}
	if c.Allow, err = parsePrefixes(t.allow); err != nil {
		return fmt.Errorf("--turn-allow: %w", err)
	}
	return nil
}

// parsePortRange parses "min-max".
func parsePortRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if ok {
		lo, err = strconv.Atoi(strings.TrimSpace(a))
		if err == nil {
			hi, err = strconv.Atoi(strings.TrimSpace(b))
		}
	}
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX", s)
	}
	return lo, hi, nil
}

func parsePrefixes(l []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range l {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
