package signaling

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/wait"
)

// upload posts data as a blob of room with session; a nil-length body is
// sent chunked, without Content-Length.
func (s *testServer) upload(room, session string, data []byte, chunked bool) (int, []byte) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	var body io.Reader = bytes.NewReader(data)
	if chunked {
		body = io.MultiReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ts.URL+"/v1/rooms/"+room+"/blobs", body)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Session "+session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("upload: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, b
}

func (s *testServer) uploadOK(room, session string, data []byte) api.BlobCreated {
	s.t.Helper()
	status, b := s.upload(room, session, data, false)
	var bc api.BlobCreated
	if status != http.StatusCreated || json.Unmarshal(b, &bc) != nil {
		s.t.Fatalf("upload: %d %s", status, b)
	}
	return bc
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestBlobRoundTrip: a participant stores a file, another fetches the same
// bytes; the store holds exactly what was uploaded, under the room.
func TestBlobRoundTrip(t *testing.T) {
	store := &MemoryBlobStore{}
	s := newTestServer(t, func(c *Config) { c.Blobs = store })
	a, _ := s.join("r1", "alice")
	b, _ := s.join("r1", "bob")
	s.connect(a)
	s.connect(b)
	data := randomBytes(t, 3<<20+5)
	for _, chunked := range []bool{false, true} {
		status, body := s.upload("r1", a.Session, data, chunked)
		var bc api.BlobCreated
		if status != http.StatusCreated || json.Unmarshal(body, &bc) != nil {
			t.Fatalf("upload (chunked %v): %d %s", chunked, status, body)
		}
		if bc.Size != int64(len(data)) || len(bc.ID) < 20 || bc.Expires < time.Now().Add(DefaultBlobTTL-time.Minute).Unix() {
			t.Fatalf("created %+v", bc)
		}
		status, got := s.do("GET", "/v1/rooms/r1/blobs/"+bc.ID, "Session "+b.Session, nil)
		if status != http.StatusOK || !bytes.Equal(got, data) {
			t.Fatalf("download: %d, %d bytes", status, len(got))
		}
		stored, err := store.Get("r1", bc.ID)
		if err != nil || !bytes.Equal(stored, data) {
			t.Fatalf("store holds %d bytes, %v", len(stored), err)
		}
	}
}

// TestBlobRefusals: every way to miss a file gets its own error code.
func TestBlobRefusals(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.MaxBlobBytes = 100 << 10
		c.RoomBlobBytes = 250 << 10
		c.BlobStoreBytes = 400 << 10
	})
	a, _ := s.join("r1", "alice")
	other, _ := s.join("r2", "carol")
	third, _ := s.join("r3", "dave")
	s.connect(a)
	s.connect(other)
	s.connect(third)
	bc := s.uploadOK("r1", a.Session, randomBytes(t, 100<<10))

	// Who may fetch: only participants of the room, by their session.
	status, b := s.do("GET", "/v1/rooms/r1/blobs/"+bc.ID, "", nil)
	s.expectError(status, b, 401, api.CodeUnauthorized)
	status, b = s.do("GET", "/v1/rooms/r1/blobs/"+bc.ID, "Session "+other.Session, nil)
	s.expectError(status, b, 401, api.CodeUnauthorized)
	status, b = s.do("GET", "/v1/rooms/r1/blobs/"+bc.ID, "Bearer "+mintToken(t, "r1", "alice"), nil)
	s.expectError(status, b, 401, api.CodeUnauthorized)
	// A file of another room is not found in this one, even by its id.
	status, b = s.do("GET", "/v1/rooms/r2/blobs/"+bc.ID, "Session "+other.Session, nil)
	s.expectError(status, b, 404, api.CodeBlobNotFound)
	status, b = s.do("GET", "/v1/rooms/r1/blobs/b_nothing", "Session "+a.Session, nil)
	s.expectError(status, b, 404, api.CodeBlobNotFound)

	// Too large, whether announced or not.
	status, b = s.upload("r1", a.Session, randomBytes(t, 100<<10+1), false)
	s.expectError(status, b, 413, api.CodeBlobTooLarge)
	status, b = s.upload("r1", a.Session, randomBytes(t, 300<<10), true)
	s.expectError(status, b, 413, api.CodeBlobTooLarge)

	// The room's quota: 100 KiB stored, 100 more fit, the next does not.
	s.uploadOK("r1", a.Session, randomBytes(t, 100<<10))
	status, b = s.upload("r1", a.Session, randomBytes(t, 60<<10), false)
	s.expectError(status, b, 507, api.CodeRoomQuotaExceeded)
	// The server's: 200 KiB of r1 and 150 of r2 fill 350 of 400.
	s.uploadOK("r2", other.Session, randomBytes(t, 100<<10))
	s.uploadOK("r2", other.Session, randomBytes(t, 50<<10))
	status, b = s.upload("r3", third.Session, randomBytes(t, 60<<10), false)
	s.expectError(status, b, 507, api.CodeBlobStorageFull)
	s.uploadOK("r3", third.Session, randomBytes(t, 50<<10))

	status, b = s.do("PUT", "/v1/rooms/r1/blobs", "Session "+a.Session, nil)
	s.expectError(status, b, 405, api.CodeMethodNotAllowed)
	status, b = s.do("POST", "/v1/rooms/bad%20room/blobs", "Session "+a.Session, nil)
	s.expectError(status, b, 400, api.CodeInvalidName)
}

// TestBlobsExpire: a file is deleted after the TTL, and what it used
// counts no more against the room's quota.
func TestBlobsExpire(t *testing.T) {
	store := &MemoryBlobStore{}
	s := newTestServer(t, func(c *Config) {
		c.Blobs = store
		c.BlobTTL = 300 * time.Millisecond
		c.MaxBlobBytes = 10 << 10
		c.RoomBlobBytes = 10 << 10
	})
	a, _ := s.join("r1", "alice")
	s.connect(a)
	bc := s.uploadOK("r1", a.Session, randomBytes(t, 10<<10))
	wait.For(t, "the file to expire", func() bool {
		_, err := store.Get("r1", bc.ID)
		return err == ErrBlobNotFound
	})
	status, b := s.do("GET", "/v1/rooms/r1/blobs/"+bc.ID, "Session "+a.Session, nil)
	s.expectError(status, b, 404, api.CodeBlobNotFound)
	s.uploadOK("r1", a.Session, randomBytes(t, 10<<10))
}

// TestBlobsGoWithTheRoom: a room's files are deleted when its last
// participant leaves; another room's stay.
func TestBlobsGoWithTheRoom(t *testing.T) {
	store := &MemoryBlobStore{}
	s := newTestServer(t, func(c *Config) { c.Blobs = store })
	a, _ := s.join("r1", "alice")
	b, _ := s.join("r1", "bob")
	c, _ := s.join("r2", "carol")
	ea, eb := s.connect(a), s.connect(b)
	s.connect(c)
	gone := s.uploadOK("r1", a.Session, randomBytes(t, 1000))
	kept := s.uploadOK("r2", c.Session, randomBytes(t, 1000))
	ea.send(map[string]string{"type": api.TypeLeave})
	eb.expectLeft(a.ParticipantID, api.ReasonLeft)
	if _, err := store.Get("r1", gone.ID); err != nil {
		t.Fatalf("the file went while bob is still in the call: %v", err)
	}
	eb.send(map[string]string{"type": api.TypeLeave})
	wait.For(t, "the room's files to be deleted when it ends", func() bool {
		_, err := store.Get("r1", gone.ID)
		return err == ErrBlobNotFound
	})
	if _, err := store.Get("r2", kept.ID); err != nil {
		t.Fatalf("another room's file: %v", err)
	}
	s.srv.blobs.mu.Lock()
	defer s.srv.blobs.mu.Unlock()
	if s.srv.blobs.rooms["r1"] != nil || s.srv.blobs.total != 1000 {
		t.Fatalf("index still counts r1: %v, %d bytes", s.srv.blobs.rooms["r1"], s.srv.blobs.total)
	}
}
