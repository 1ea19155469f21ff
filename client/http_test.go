package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/wait"
)

func TestAPIClientURLs(t *testing.T) {
	tests := []struct {
		base, events, wantURL, wantWS string
	}{
		{"http://127.0.0.1:8080", "/v1/rooms/r/participants/p1/events",
			"http://127.0.0.1:8080/v1/ice-servers", "ws://127.0.0.1:8080/v1/rooms/r/participants/p1/events?session=s+%2F%3D"},
		{"https://sotto.example/", "/v1/rooms/r/participants/p1/events",
			"https://sotto.example/v1/ice-servers", "wss://sotto.example/v1/rooms/r/participants/p1/events?session=s+%2F%3D"},
		{"https://sotto.example/voice/?x=1#frag", "/v1/rooms/r/participants/p1/events",
			"https://sotto.example/voice/v1/ice-servers", "wss://sotto.example/voice/v1/rooms/r/participants/p1/events?session=s+%2F%3D"},
		{"http://127.0.0.1:8080", "wss://media.example/v1/rooms/r/participants/p1/events",
			"http://127.0.0.1:8080/v1/ice-servers", "wss://media.example/v1/rooms/r/participants/p1/events?session=s+%2F%3D"},
	}
	for _, tt := range tests {
		a, err := newAPIClient(tt.base, nil)
		if err != nil {
			t.Fatalf("newAPIClient(%q): %v", tt.base, err)
		}
		if got := a.url("/v1/ice-servers"); got != tt.wantURL {
			t.Errorf("%s: url = %q, want %q", tt.base, got, tt.wantURL)
		}
		got, err := a.eventsURL(tt.events, "s /=")
		if err != nil {
			t.Fatalf("%s: eventsURL: %v", tt.base, err)
		}
		if got != tt.wantWS {
			t.Errorf("%s: eventsURL = %q, want %q", tt.base, got, tt.wantWS)
		}
	}
}

func TestAPIClientRejectsBadServerURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8080", "ftp://sotto.example", "http://", "http://[::1"} {
		if _, err := newAPIClient(u, nil); err == nil {
			t.Errorf("newAPIClient(%q) succeeded, want error", u)
		}
	}
}

func TestAPIClientDecodesErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/ok":
			if r.Header.Get("Authorization") != "Bearer tok" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Write([]byte(`{"ice_servers":[{"urls":["stun:127.0.0.1:3478"]}]}`))
		case "/v1/full":
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"error":{"code":"room_full","message":"room \"r\" has 16 participants"}}`))
		case "/v1/html":
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte(`<html>bad gateway</html>`))
		case "/v1/garbage":
			w.Write([]byte(`{"ice_servers":`))
		}
	}))
	defer srv.Close()
	a, err := newAPIClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	var ok api.ICEServersResponse
	if err := a.do(ctx, http.MethodGet, "/v1/ok", "Bearer tok", nil, &ok); err != nil {
		t.Fatalf("ok: %v", err)
	}
	if len(ok.ICEServers) != 1 || ok.ICEServers[0].URLs[0] != "stun:127.0.0.1:3478" {
		t.Errorf("ok: decoded %+v", ok)
	}

	err = a.do(ctx, http.MethodPost, "/v1/full", "Bearer tok", api.JoinRequest{SDP: "v=0"}, nil)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeRoomFull || !strings.Contains(ae.Message, "16 participants") {
		t.Errorf("full: error %v, want *api.Error room_full", err)
	}
	if !isAPIError(err, api.CodeRoomFull) || isAPIError(err, api.CodeNotFound) {
		t.Errorf("isAPIError misjudges %v", err)
	}

	err = a.do(ctx, http.MethodGet, "/v1/html", "", nil, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusBadGateway {
		t.Errorf("html: error %v, want *StatusError 502", err)
	}
	if errors.As(err, &ae) {
		t.Errorf("html: error %v should not be an *api.Error", err)
	}

	if err := a.do(ctx, http.MethodGet, "/v1/garbage", "", nil, &ok); err == nil {
		t.Error("garbage: want decode error")
	}
}

// A join the server refuses surfaces the API error, wrapped with the room.
func TestJoinSurfacesAPIError(t *testing.T) {
	var deletes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/ice-servers":
			w.Write([]byte(`{"ice_servers":[]}`))
		case r.URL.Path == "/v1/prekeys" && r.Method == http.MethodPut:
			w.Write([]byte(`{"remaining":20}`))
		case r.URL.Path == "/v1/rooms/standup/join" && r.Method == http.MethodPost:
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"error":{"code":"room_full","message":"full"}}`))
		case r.Method == http.MethodDelete:
			deletes.Add(1)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	tok := "sotto1.eyJyb29tIjoic3RhbmR1cCIsInN1YiI6ImFsaWNlIiwiZXhwIjo0MTAyNDQ0ODAwfQ.bWFj"
	_, err := Join(ctx, srv.URL, tok, &Options{IPFilter: loopback})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeRoomFull {
		t.Fatalf("Join error = %v, want *api.Error room_full", err)
	}
	if !strings.Contains(err.Error(), `join room "standup"`) {
		t.Errorf("Join error %q lacks the room context", err)
	}
	if n := deletes.Load(); n != 0 {
		t.Errorf("refused join sent %d leave requests", n)
	}
}

// A join that fails after the server admitted the participant tells the
// server, so that it does not linger in the room until the drop timeout.
func TestFailedJoinLeaves(t *testing.T) {
	var leaveAuth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/ice-servers":
			w.Write([]byte(`{"ice_servers":[]}`))
		case r.URL.Path == "/v1/prekeys" && r.Method == http.MethodPut:
			w.Write([]byte(`{"remaining":20}`))
		case r.URL.Path == "/v1/rooms/standup/join" && r.Method == http.MethodPost:
			w.Write([]byte(`{"participant_id":"p_1","identity":"alice","room":"standup","sdp":"not an answer",
				"session":"s3cr3t","events_url":"/v1/rooms/standup/participants/p_1/events","participants":[]}`))
		case r.URL.Path == "/v1/rooms/standup/participants/p_1" && r.Method == http.MethodDelete:
			leaveAuth.Store(r.Header.Get("Authorization"))
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	tok := "sotto1.eyJyb29tIjoic3RhbmR1cCIsInN1YiI6ImFsaWNlIiwiZXhwIjo0MTAyNDQ0ODAwfQ.bWFj"
	_, err := Join(ctx, srv.URL, tok, &Options{IPFilter: loopback})
	if err == nil || !strings.Contains(err.Error(), "apply answer") {
		t.Fatalf("Join with a bad answer: %v, want an apply answer error", err)
	}
	if got, _ := leaveAuth.Load().(string); got != "Session s3cr3t" {
		t.Fatalf("leave request authorization %q, want the session", got)
	}
}

// A join answered wrong_node is sent again, whole, to the node named; the
// client of that node is returned and the first is left as it was. A
// redirect loop ends after maxNodeHops, and https never moves to http.
func TestPostJoinFollowsWrongNode(t *testing.T) {
	var ownerHits atomic.Int32
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ownerHits.Add(1)
		var req api.JoinRequest
		if r.Header.Get("Authorization") != "Bearer tok" || json.NewDecoder(r.Body).Decode(&req) != nil || req.SDP != "offer" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"participant_id":"p1"}`))
	}))
	defer owner.Close()
	wrongNode := func(target *string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(api.ErrorBody{Error: &api.Error{Code: api.CodeWrongNode, Message: "elsewhere", NodeURL: *target}})
		}))
	}
	ownerURL := owner.URL
	entry := wrongNode(&ownerURL)
	defer entry.Close()

	a, err := newAPIClient(entry.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	var jr api.JoinResponse
	got, err := a.postJoin(context.Background(), "/v1/rooms/r/join", "Bearer tok", api.JoinRequest{SDP: "offer"}, &jr)
	if err != nil || jr.ParticipantID != "p1" || got.base.String() != owner.URL || a.base.String() != entry.URL {
		t.Fatalf("join: %v, %+v, answered by %s (entry now %s)", err, jr, got.base, a.base)
	}

	// Two nodes naming each other.
	var bURL string
	ping := wrongNode(&bURL)
	defer ping.Close()
	pingURL := ping.URL
	pong := wrongNode(&pingURL)
	defer pong.Close()
	bURL = pong.URL
	a, _ = newAPIClient(ping.URL, nil)
	if _, err := a.postJoin(context.Background(), "/v1/rooms/r/join", "Bearer tok", api.JoinRequest{SDP: "offer"}, &jr); !isAPIError(err, api.CodeWrongNode) {
		t.Fatalf("redirect loop: %v, want wrong_node", err)
	}

	secure, _ := newAPIClient("https://sotto.example", nil)
	if _, err := secure.at("http://node2.sotto.example"); err == nil {
		t.Error("followed https to http")
	}
	if next, err := secure.at("https://node2.sotto.example/"); err != nil || next.url("/v1/x") != "https://node2.sotto.example/v1/x" {
		t.Errorf("https to https: %v", err)
	}
	if ownerHits.Load() != 1 {
		t.Errorf("owner asked %d times", ownerHits.Load())
	}
}
