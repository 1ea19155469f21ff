package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/wait"
)

// drainTries is more fetches than any per-requester allowance, so a
// missing limit shows as answers that never turn into 429.
const drainTries = 300

// fetchAnswer is one answer of GET /v1/prekeys/{identity}.
type fetchAnswer struct {
	status  int
	body    []byte
	headers http.Header // without Date
}

func fetchPrekeys(t *testing.T, ctx context.Context, base, token, identity string) fetchAnswer {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/prekeys/"+identity, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	h := resp.Header.Clone()
	h.Del("Date")
	return fetchAnswer{status: resp.StatusCode, body: b, headers: h}
}

func (a fetchAnswer) errorCode(t *testing.T) api.ErrorCode {
	t.Helper()
	var e api.ErrorBody
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == nil {
		t.Fatalf("%d %s is not an error body", a.status, a.body)
	}
	return e.Error.Code
}

// expectRateLimited checks a 429 rate_limited answer with a usable
// Retry-After.
func (a fetchAnswer) expectRateLimited(t *testing.T) {
	t.Helper()
	if a.status != http.StatusTooManyRequests || a.errorCode(t) != api.CodeRateLimited {
		t.Fatalf("got %d %s, want 429 rate_limited", a.status, a.body)
	}
	if secs, err := strconv.Atoi(a.headers.Get("Retry-After")); err != nil || secs < 1 {
		t.Fatalf("Retry-After %q, want whole seconds ≥ 1", a.headers.Get("Retry-After"))
	}
}

func mintToken(t *testing.T, ctx context.Context, secret, room, identity string) string {
	t.Helper()
	tok, err := command(t, ctx, nil, "token", "--secret", secret, "--room", room, "--identity", identity).Output()
	if err != nil {
		t.Fatalf("sotto token: %v", err)
	}
	return strings.TrimSpace(string(tok))
}

// createCall creates a private call as name (POST /v1/calls).
func createCall(t *testing.T, base, name string) api.CreateCallResponse {
	t.Helper()
	body, _ := json.Marshal(api.CreateCallRequest{Name: name})
	resp, err := http.Post(base+"/v1/calls", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var call api.CreateCallResponse
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&call) != nil {
		t.Fatalf("create call: %d", resp.StatusCode)
	}
	return call
}

// putPrekeys uploads a bundle with n one-time X25519 prekeys (and a
// last-resort ML-KEM one) and returns how many the server then holds.
func putPrekeys(t *testing.T, ctx context.Context, base, token string, n int) int {
	t.Helper()
	u := api.PrekeyUpload{
		IdentityKey:    bytes.Repeat([]byte{7}, 128),
		SignedPrekey:   api.SignedPrekey{ID: 1, Key: bytes.Repeat([]byte{8}, 32), Signature: bytes.Repeat([]byte{9}, 64)},
		OneTimePrekeys: []api.OneTimePrekey{},
		KEMPrekey:      api.KEMPrekey{ID: 1, Key: bytes.Repeat([]byte{10}, 1184), Signature: bytes.Repeat([]byte{11}, 64)},
	}
	for i := range n {
		u.OneTimePrekeys = append(u.OneTimePrekeys, api.OneTimePrekey{ID: uint32(i + 1), Key: bytes.Repeat([]byte{byte(i)}, 32)})
	}
	body, _ := json.Marshal(u)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, base+"/v1/prekeys", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st api.PrekeyStatus
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		t.Fatalf("upload prekeys: %d", resp.StatusCode)
	}
	return st.Remaining
}

// TestServePrekeyDrain replays issue 10's attack on a real "sotto serve":
// a token minted anonymously through POST /v1/calls fetched another room's
// identity's bundle until its one-time prekeys were gone, and 200 against
// 404 told which identities exist.
func TestServePrekeyDrain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	const secret = "drain-test-secret-0123456789abcdef"
	base := startServe(t, ctx, nil, "--tcp-port", "-1", "--secret", secret).url

	aliceTok := mintToken(t, ctx, secret, "r1", "alice")
	joinCall(t, ctx, base, aliceTok)
	if n := putPrekeys(t, ctx, base, aliceTok, 100); n != 100 {
		t.Fatalf("alice holds %d one-time prekeys, want 100", n)
	}

	// The outsider: an anonymous call of its own, nothing to do with r1.
	call := createCall(t, base, "mallory")

	absent := fetchPrekeys(t, ctx, base, call.Token, "nobody")
	if absent.status != http.StatusNotFound || absent.errorCode(t) != api.CodeNotFound {
		t.Fatalf("absent identity: %d %s", absent.status, absent.body)
	}
	var limited *fetchAnswer
	refused := 0
	for range drainTries {
		a := fetchPrekeys(t, ctx, base, call.Token, "alice")
		if a.status == http.StatusTooManyRequests {
			limited = &a
			break
		}
		// Alice exists and has prekeys, but the outsider may not know it:
		// the answer is the one for an identity that never uploaded.
		if a.status != absent.status || !bytes.Equal(a.body, absent.body) || !equalHeaders(a.headers, absent.headers) {
			t.Fatalf("outsider fetching alice got %d %s %v; an absent identity gets %d %s %v",
				a.status, a.body, a.headers, absent.status, absent.body, absent.headers)
		}
		refused++
	}
	if limited == nil {
		t.Fatalf("%d fetches by one token were never rate-limited", drainTries)
	}
	limited.expectRateLimited(t)
	t.Logf("outsider: %d fetches refused as absent, then 429 (Retry-After %s)", refused, limited.headers.Get("Retry-After"))

	// A co-participant gets one one-time prekey, then bundles without one,
	// then 429.
	bobTok := mintToken(t, ctx, secret, "r1", "bob")
	joinCall(t, ctx, base, bobTok)
	oneTime, served := 0, 0
	limited = nil
	for range drainTries {
		a := fetchPrekeys(t, ctx, base, bobTok, "alice")
		if a.status == http.StatusTooManyRequests {
			limited = &a
			break
		}
		var b api.PrekeyBundle
		if a.status != http.StatusOK || json.Unmarshal(a.body, &b) != nil || b.Identity != "alice" || len(b.IdentityKey) != 128 {
			t.Fatalf("co-participant fetch: %d %s", a.status, a.body)
		}
		served++
		if b.OneTimePrekey != nil {
			oneTime++
		}
	}
	if oneTime != 1 {
		t.Fatalf("co-participant got %d one-time prekeys in %d bundles, want 1", oneTime, served)
	}
	if limited == nil {
		t.Fatalf("%d fetches by a co-participant were never rate-limited", drainTries)
	}
	limited.expectRateLimited(t)

	// Of alice's 100 one-time prekeys, only bob's is gone.
	if n := putPrekeys(t, ctx, base, aliceTok, 0); n != 99 {
		t.Fatalf("alice holds %d one-time prekeys after the attack, want 99", n)
	}
}

// equalHeaders compares the headers a client could tell answers apart by.
func equalHeaders(a, b http.Header) bool {
	for _, k := range []string{"Content-Type", "Content-Length", "Cache-Control", "Retry-After", "WWW-Authenticate"} {
		if a.Get(k) != b.Get(k) {
			return false
		}
	}
	return true
}
