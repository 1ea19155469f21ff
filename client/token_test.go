package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/sotto-voice/sotto/token"
)

// Join reads the room and identity from the token before anything else: a
// string that is not a room token fails without a request to the server.
func TestJoinRefusesMalformedToken(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "unexpected", http.StatusTeapot)
	}))
	defer srv.Close()
	for _, tok := range []string{"", "not-a-token", "sotto1.!!!.mac", "sotto-invite1.e30.AAAA"} {
		if _, err := Join(context.Background(), srv.URL, tok, nil); !errors.Is(err, token.ErrInvalid) {
			t.Errorf("Join with token %q: %v, want token.ErrInvalid", tok, err)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("the server got %d requests", n)
	}
}
