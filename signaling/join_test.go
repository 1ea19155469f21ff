package signaling

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/token"
)

// mintExpired signs a token whose expiry has passed.
func mintExpired(t *testing.T, room, identity string) string {
	t.Helper()
	tok, err := token.Mint(testSecret, token.Claims{Room: room, Identity: identity, Expiry: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestHealthz(t *testing.T) {
	s := newTestServer(t, nil)
	status, b := s.do(http.MethodGet, "/healthz", "", nil)
	if status != http.StatusOK || !strings.Contains(string(b), `"status":"ok"`) {
		t.Fatalf("healthz: %d %s", status, b)
	}
}

func TestJoinTokenErrors(t *testing.T) {
	s := newTestServer(t, nil)
	offer, _ := json.Marshal(api.JoinRequest{SDP: newPeer(t, webrtc.MimeTypeOpus).offer(t)})
	other, err := token.Mint([]byte("another-secret-0123456789"), token.Claims{Room: "r1", Identity: "alice", Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	good := mintToken(t, "r1", "alice")
	cases := []struct {
		name, auth string
		code       api.ErrorCode
	}{
		{"missing", "", api.CodeUnauthorized},
		{"not bearer", "Basic " + good, api.CodeUnauthorized},
		{"garbage", "Bearer not-a-token", api.CodeUnauthorized},
		{"tampered", "Bearer " + good[:len(good)-2] + "AA", api.CodeUnauthorized},
		{"other secret", "Bearer " + other, api.CodeUnauthorized},
		{"expired", "Bearer " + mintExpired(t, "r1", "alice"), api.CodeTokenExpired},
		{"other room", "Bearer " + mintToken(t, "r2", "alice"), api.CodeWrongRoom},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, b := s.do(http.MethodPost, "/v1/rooms/r1/join", c.auth, offer)
			s.expectError(status, b, http.StatusUnauthorized, c.code)
		})
	}
	// The server keeps serving good participants.
	jr, _ := s.join("r1", "alice")
	if jr.Identity != "alice" || jr.Room != "r1" || !strings.HasPrefix(jr.ParticipantID, "p_") || len(jr.ParticipantID) != 14 {
		t.Fatalf("join response %+v", jr)
	}
	if jr.EventsURL != "/v1/rooms/r1/participants/"+jr.ParticipantID+"/events" {
		t.Fatalf("events url %q", jr.EventsURL)
	}
	if len(jr.Session) != 43 || jr.ICEServers == nil || jr.Participants == nil {
		t.Fatalf("join response %+v", jr)
	}
}

func TestJoinBadInput(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxMessageBytes = 16 << 10 })
	auth := "Bearer " + mintToken(t, "r1", "alice")
	pcmu, _ := json.Marshal(api.JoinRequest{SDP: newPeer(t, webrtc.MimeTypePCMU).offer(t)})
	huge, _ := json.Marshal(api.JoinRequest{SDP: strings.Repeat("a", 17<<10)})
	cases := []struct {
		name, method, path, auth string
		body                     []byte
		status                   int
		code                     api.ErrorCode
	}{
		{"malformed json", "POST", "/v1/rooms/r1/join", auth, []byte(`{"sdp": `), 400, api.CodeInvalidJSON},
		{"trailing data", "POST", "/v1/rooms/r1/join", auth, []byte(`{"sdp":"x"} {}`), 400, api.CodeInvalidJSON},
		{"wrong type", "POST", "/v1/rooms/r1/join", auth, []byte(`{"sdp": 5}`), 400, api.CodeBadRequest},
		{"no sdp", "POST", "/v1/rooms/r1/join", auth, []byte(`{}`), 400, api.CodeBadRequest},
		{"garbage sdp", "POST", "/v1/rooms/r1/join", auth, []byte(`{"sdp":"hello\r\nworld"}`), 400, api.CodeInvalidSDP},
		{"pcmu only", "POST", "/v1/rooms/r1/join", auth, pcmu, 400, api.CodeUnsupportedCodec},
		{"oversized", "POST", "/v1/rooms/r1/join", auth, huge, 413, api.CodeMessageTooLarge},
		{"bad room name", "POST", "/v1/rooms/bad%21room/join", auth, []byte(`{}`), 400, api.CodeInvalidName},
		{"wrong method", "GET", "/v1/rooms/r1/join", auth, nil, 405, api.CodeMethodNotAllowed},
		{"unknown route", "GET", "/v1/nothing", auth, nil, 404, api.CodeNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, b := s.do(c.method, c.path, c.auth, c.body)
			s.expectError(status, b, c.status, c.code)
		})
	}
	// Failed joins leave nothing behind, and good participants still join.
	s.srv.mu.Lock()
	rooms := len(s.srv.rooms)
	s.srv.mu.Unlock()
	if rooms != 0 {
		t.Fatalf("%d rooms left after failed joins", rooms)
	}
	a, _ := s.join("r1", "alice")
	b, _ := s.join("r1", "bob")
	if len(b.Participants) != 1 || b.Participants[0] != (api.Participant{ID: a.ParticipantID, Identity: "alice"}) {
		t.Fatalf("bob sees %+v", b.Participants)
	}
}

func TestRoomLimits(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxParticipants = 2; c.MaxRooms = 1 })
	s.join("r1", "alice")
	s.join("r1", "bob")
	offer, _ := json.Marshal(api.JoinRequest{SDP: newPeer(t, webrtc.MimeTypeOpus).offer(t)})
	status, b := s.do("POST", "/v1/rooms/r1/join", "Bearer "+mintToken(t, "r1", "carol"), offer)
	s.expectError(status, b, http.StatusConflict, api.CodeRoomFull)
	status, b = s.do("POST", "/v1/rooms/r2/join", "Bearer "+mintToken(t, "r2", "carol"), offer)
	s.expectError(status, b, http.StatusServiceUnavailable, api.CodeTooManyRooms)
	// A returning identity replaces itself and so fits in a full room.
	s.join("r1", "bob")
}

func TestICEServers(t *testing.T) {
	want := []api.ICEServer{{URLs: []string{"turn:127.0.0.1:3478"}, Username: "u", Credential: "c"}}
	var (
		mu    sync.Mutex
		asked []string
	)
	s := newTestServer(t, func(c *Config) {
		c.ICEServers = func(identity string) []api.ICEServer {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, identity)
			return want
		}
	})
	status, b := s.do("GET", "/v1/ice-servers", "Bearer "+mintToken(t, "any", "alice"), nil)
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, b)
	}
	var got api.ICEServersResponse
	if err := json.Unmarshal(b, &got); err != nil || len(got.ICEServers) != 1 || got.ICEServers[0].Username != "u" {
		t.Fatalf("ice servers %s", b)
	}
	jr, _ := s.join("r1", "bob")
	if len(jr.ICEServers) != 1 || jr.ICEServers[0].URLs[0] != want[0].URLs[0] {
		t.Fatalf("join ice servers %+v", jr.ICEServers)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 2 || asked[0] != "alice" || asked[1] != "bob" {
		t.Fatalf("hook asked for %v", asked)
	}
	status, b = s.do("GET", "/v1/ice-servers", "", nil)
	s.expectError(status, b, http.StatusUnauthorized, api.CodeUnauthorized)
}

func TestLeaveByDelete(t *testing.T) {
	s := newTestServer(t, nil)
	a, _ := s.join("r1", "alice")
	b, _ := s.join("r1", "bob")
	ea := s.connect(a)
	ea.expectJoined(b.ParticipantID)
	eb := s.connect(b)
	path := "/v1/rooms/r1/participants/" + b.ParticipantID
	status, body := s.do("DELETE", path, "Session wrong", nil)
	s.expectError(status, body, http.StatusUnauthorized, api.CodeUnauthorized)
	status, body = s.do("DELETE", "/v1/rooms/r1/participants/p_nobody", "Session "+b.Session, nil)
	s.expectError(status, body, http.StatusNotFound, api.CodeNotFound)
	status, body = s.do("DELETE", path, "Session "+b.Session, nil)
	if status != http.StatusNoContent {
		t.Fatalf("leave: %d %s", status, body)
	}
	ea.expectLeft(b.ParticipantID, api.ReasonLeft)
	eb.expectClosed(api.ReasonLeft)
	status, body = s.do("DELETE", path, "Session "+b.Session, nil)
	s.expectError(status, body, http.StatusNotFound, api.CodeNotFound)
}

// TestSameIdentityMovesDevice: one device at a time. The same identity
// joining again takes the call over: the first participant is told it
// moved to another device, the others see it leave for that reason and
// the new one join in its place. A rejoin from the same device says so.
func TestSameIdentityMovesDevice(t *testing.T) {
	s := newTestServer(t, nil)
	a1, _ := s.join("r1", "alice")
	b, _ := s.join("r1", "bob")
	ea1 := s.connect(a1)
	ea1.expectJoined(b.ParticipantID)
	eb := s.connect(b)
	a2, _ := s.join("r1", "alice")
	ea1.expectClosed(api.ReasonMovedToAnotherDevice)
	eb.expectLeft(a1.ParticipantID, api.ReasonMovedToAnotherDevice)
	var j api.Joined
	eb.decode(eb.expect(api.TypeJoined), &j)
	if j.Participant.ID != a2.ParticipantID || j.Replaces != a1.ParticipantID {
		t.Fatalf("joined %+v, want %s replacing %s", j, a2.ParticipantID, a1.ParticipantID)
	}
	if len(a2.Participants) != 1 || a2.Participants[0].ID != b.ParticipantID {
		t.Fatalf("new alice sees %+v", a2.Participants)
	}

	// A join that names the participant it takes over (the same device
	// rejoining) replaces it without a device switch.
	ea2 := s.connect(a2)
	p := newPeer(t, webrtc.MimeTypeOpus)
	status, body := s.postJSON("/v1/rooms/r1/join", "Bearer "+mintToken(t, "r1", "alice"), api.JoinRequest{SDP: p.offer(t), Replaces: a2.ParticipantID})
	var a3 api.JoinResponse
	if status != http.StatusOK || json.Unmarshal(body, &a3) != nil {
		t.Fatalf("rejoin: %d %s", status, body)
	}
	ea2.expectClosed(api.ReasonReplaced)
	eb.expectLeft(a2.ParticipantID, api.ReasonReplaced)
	eb.decode(eb.expect(api.TypeJoined), &j)
	if j.Participant.ID != a3.ParticipantID || j.Replaces != a2.ParticipantID {
		t.Fatalf("joined %+v, want %s replacing %s", j, a3.ParticipantID, a2.ParticipantID)
	}
}

func TestShutdown(t *testing.T) {
	s := newTestServer(t, nil)
	a, _ := s.join("r1", "alice")
	ea := s.connect(a)
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := contextWithWait()
		defer cancel()
		shutdown <- s.srv.Shutdown(ctx)
	}()
	ea.expectClosed(api.ReasonShutdown)
	if err := <-shutdown; err != nil {
		t.Fatal(err)
	}
	offer, _ := json.Marshal(api.JoinRequest{SDP: newPeer(t, webrtc.MimeTypeOpus).offer(t)})
	status, b := s.do("POST", "/v1/rooms/r1/join", "Bearer "+mintToken(t, "r1", "bob"), offer)
	s.expectError(status, b, http.StatusServiceUnavailable, api.CodeShuttingDown)
	status, b = s.do("GET", "/healthz", "", nil)
	s.expectError(status, b, http.StatusServiceUnavailable, api.CodeShuttingDown)
}
