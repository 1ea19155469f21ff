package e2ee

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"
)

// TestMuteStateVectors: the Go encoding matches the vectors the page's
// implementation also passes (web/static/e2ee/test/vectors.js), and every
// invalid plaintext of the file is refused.
func TestMuteStateVectors(t *testing.T) {
	b, err := os.ReadFile("testdata/mute-state-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		MuteState []struct {
			Muted   bool   `json:"muted"`
			Encoded string `json:"encoded"`
		} `json:"mute_state"`
		Invalid []string `json:"invalid"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.MuteState) != 2 || len(v.Invalid) == 0 {
		t.Fatalf("vector file holds %d encodings and %d invalid plaintexts", len(v.MuteState), len(v.Invalid))
	}
	for _, c := range v.MuteState {
		want, err := hex.DecodeString(c.Encoded)
		if err != nil {
			t.Fatal(err)
		}
		if got := MarshalMuteState(c.Muted); !bytes.Equal(got, want) {
			t.Errorf("MarshalMuteState(%v) = %x, want %s", c.Muted, got, c.Encoded)
		}
		if ContentTypeOf(want) != ContentMuteState {
			t.Errorf("content type of %s = %#x", c.Encoded, ContentTypeOf(want))
		}
		if muted, err := ParseMuteState(want); err != nil || muted != c.Muted {
			t.Errorf("ParseMuteState(%s) = %v, %v; want %v", c.Encoded, muted, err, c.Muted)
		}
	}
	for _, s := range v.Invalid {
		in, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseMuteState(in); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("ParseMuteState(%q) = %v, want ErrInvalidMessage", s, err)
		}
	}
}
