package testserver

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/token"
)

func TestServerServesOnLoopback(t *testing.T) {
	s := Start(t, nil)
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Errorf("URL %q is not on loopback", s.URL)
	}
	if ip := s.Media.UDPAddr().String(); !strings.HasPrefix(ip, "127.0.0.1:") {
		t.Errorf("media UDP on %s, want loopback", ip)
	}
	resp, err := http.Get(s.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body["status"] != "ok" {
		t.Fatalf("healthz: %d %v %v", resp.StatusCode, body, err)
	}

	tok := s.Token("standup", "alice")
	c, err := token.Verify(s.Secret, tok, "standup", time.Now())
	if err != nil || c.Identity != "alice" {
		t.Fatalf("token %q does not verify for alice: %+v, %v", tok, c, err)
	}
	if other := Start(t, nil); string(other.Secret) == string(s.Secret) {
		t.Error("two servers share a secret")
	}
}
