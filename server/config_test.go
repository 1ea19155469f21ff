package server

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// fields lists the Config fields err complains about.
func fields(err error) []string {
	var out []string
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return nil
	}
	for _, e := range j.Unwrap() {
		var ce *ConfigError
		if errors.As(e, &ce) {
			out = append(out, ce.Field)
		}
	}
	return out
}

func TestValidate(t *testing.T) {
	if err := (&Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	for _, c := range []struct {
		cfg   Config
		field string
	}{
		{Config{Secret: []byte("short")}, "Secret"},
		{Config{HTTP: HTTPConfig{Addr: "127.0.0.1"}, Media: MediaConfig{IP: "127.0.0.1"}}, "HTTP.Addr"},
		{Config{HTTP: HTTPConfig{BodyTimeout: -time.Second}}, "HTTP.BodyTimeout"},
		{Config{HTTP: HTTPConfig{MaxConnsPerIP: -1}}, "HTTP.MaxConnsPerIP"},
		{Config{Media: MediaConfig{IP: "nowhere"}}, "Media.IP"},
		{Config{Media: MediaConfig{UDPPort: 70000}}, "Media.UDPPort"},
		{Config{Media: MediaConfig{TCPPort: -2}}, "Media.TCPPort"},
		{Config{Media: MediaConfig{IP: "127.0.0.1", PublicIPs: []string{"x"}}}, "Media.PublicIPs"},
		{Config{MaxRooms: -1}, "MaxRooms"},
		{Config{DropTimeout: -time.Second}, "DropTimeout"},
		{Config{TURN: TURNConfig{Port: 70000}}, "TURN.Port"},
		{Config{TURN: TURNConfig{TLSPort: -1}}, "TURN.TLSPort"},
		{Config{TURN: TURNConfig{RelayPortMin: 60000, RelayPortMax: 50000}}, "TURN.RelayPortMin"},
		{Config{TURN: TURNConfig{RelayPortMin: 0, RelayPortMax: 100}}, "TURN.RelayPortMin"},
		{Config{TURN: TURNConfig{Secret: []byte("short")}}, "TURN.Secret"},
		{Config{TURN: TURNConfig{CredentialTTL: 13 * time.Hour}}, "TURN.CredentialTTL"},
		{Config{TURN: TURNConfig{MaxAllocations: -1}}, "TURN.MaxAllocations"},
		{Config{TURN: TURNConfig{Transports: []string{"sctp"}}}, "TURN.Transports"},
		{Config{TURN: TURNConfig{URLs: []string{"http://turn.example.com"}, Secret: []byte("0123456789abcdef")}}, "TURN.URLs"},
		// An external TURN server must be told the secret: no derived one.
		{Config{TURN: TURNConfig{URLs: []string{"turn:turn.example.com:3478"}}}, "TURN.Secret"},
		{Config{TURN: TURNConfig{Off: true, URLs: []string{"stun:stun.example.com:3478"}}}, "TURN.Off"},
		// The embedded server on every interface needs an IPv4 to advertise.
		{Config{Media: MediaConfig{IP: "0.0.0.0", PublicIPs: []string{"2001:db8::1"}}}, "Media.PublicIPs"},
		{Config{HTTP: HTTPConfig{Addr: ":7880"}, Media: MediaConfig{PublicIPs: []string{"2001:db8::1"}}}, "Media.PublicIPs"},
	} {
		if got := fields(c.cfg.Validate()); !slices.Equal(got, []string{c.field}) {
			t.Errorf("%+v: invalid fields %v, want [%s]", c.cfg, got, c.field)
		}
	}
	// STUN alone needs no secret; TURN off needs no public IP.
	for _, cfg := range []Config{
		{TURN: TURNConfig{URLs: []string{"stun:stun.example.com:3478"}}},
		{TURN: TURNConfig{Off: true}},
		{Media: MediaConfig{IP: "::", PublicIPs: []string{"198.51.100.7"}}, TURN: TURNConfig{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}},
	} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := Config{}.withDefaults(0)
	if c.HTTP.Addr != "127.0.0.1:0" || c.Media.IP != "127.0.0.1" || c.HTTP.ReadHeaderTimeout != DefaultReadHeaderTimeout || c.HTTP.BodyTimeout != DefaultBodyTimeout ||
		c.HTTP.IdleTimeout != DefaultIdleTimeout || c.HTTP.MaxConns != DefaultMaxConns || c.HTTP.MaxConnsPerIP != DefaultMaxConnsPerIP || c.Logger == nil {
		t.Fatalf("defaults %+v", c.HTTP)
	}
	// Half the open-file limit caps the connections, when lower.
	if c := (Config{}).withDefaults(1024); c.HTTP.MaxConns != 512 {
		t.Errorf("MaxConns %d with 1024 files, want 512", c.HTTP.MaxConns)
	}
	if c := (Config{}).withDefaults(1 << 20); c.HTTP.MaxConns != DefaultMaxConns {
		t.Errorf("MaxConns %d with 2^20 files, want %d", c.HTTP.MaxConns, DefaultMaxConns)
	}
	if c := (Config{HTTP: HTTPConfig{MaxConns: 5}}).withDefaults(1024); c.HTTP.MaxConns != 5 {
		t.Errorf("MaxConns %d, want the configured 5", c.HTTP.MaxConns)
	}
}

// Media binds where HTTP listens when that is one IP, so a loopback-only
// server advertises only loopback candidates.
func TestDefaultMediaIP(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:7880": "127.0.0.1",
		"[::1]:7880":     "::1",
		"0.0.0.0:7880":   "",
		":7880":          "",
		"localhost:7880": "",
		"10.1.2.3:0":     "10.1.2.3",
	} {
		c := Config{HTTP: HTTPConfig{Addr: addr}}
		if got := c.withDefaults(0).Media.IP; got != want {
			t.Errorf("HTTP on %q: media IP %q, want %q", addr, got, want)
		}
	}
	if c := (Config{HTTP: HTTPConfig{Addr: "127.0.0.1:7880"}, Media: MediaConfig{IP: "0.0.0.0"}}); c.withDefaults(0).Media.IP != "0.0.0.0" {
		t.Error("an explicit media IP was replaced")
	}
}
