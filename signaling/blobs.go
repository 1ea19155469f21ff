package signaling

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/token"
)

// Blobs are the encrypted files of a call: a participant uploads
// ciphertext (POST /v1/rooms/{room}/blobs) and sends the id, with the key,
// in an end-to-end message; the others download it (GET
// /v1/rooms/{room}/blobs/{id}). The server keeps opaque bytes, counted
// against a per-file cap, a per-room quota and a server-wide one, and
// deletes them when the room ends or after a TTL.

// Defaults for the zero values of Config's blob limits.
const (
	DefaultMaxBlobBytes   = 32 << 20
	DefaultRoomBlobBytes  = 128 << 20
	DefaultBlobStoreBytes = 1 << 30
	DefaultBlobTTL        = time.Hour
)

// blobProgressTimeout is how long an upload may take to deliver its next
// blobProgressBytes: a file of many megabytes on a slow link takes longer
// than the body timeout of an ordinary request, but it must keep coming.
const (
	blobProgressTimeout = 10 * time.Second
	blobProgressBytes   = 64 << 10
)

// ErrBlobNotFound is returned by a BlobStore for a blob it does not hold.
var ErrBlobNotFound = errors.New("signaling: blob not found")

// BlobStore keeps the bytes of stored files under their room and id. The
// server does the rest (ids, sizes, quotas, expiry) and calls Delete when
// a blob's time is up. Implementations must be safe for concurrent use.
type BlobStore interface {
	Put(room, id string, data []byte) error
	// Get returns the blob's bytes, which the caller does not modify, or
	// ErrBlobNotFound.
	Get(room, id string) ([]byte, error)
	Delete(room, id string) error
}

// MemoryBlobStore is a BlobStore in memory; blobs are lost with the
// process. The zero value is ready to use.
type MemoryBlobStore struct {
	mu    sync.Mutex
	blobs map[[2]string][]byte
}

// Put implements BlobStore.
func (m *MemoryBlobStore) Put(room, id string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.blobs == nil {
		m.blobs = make(map[[2]string][]byte)
	}
	m.blobs[[2]string{room, id}] = data
	return nil
}

// Get implements BlobStore.
func (m *MemoryBlobStore) Get(room, id string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[[2]string{room, id}]
	if !ok {
		return nil, ErrBlobNotFound
	}
	return b, nil
}

// Delete implements BlobStore.
func (m *MemoryBlobStore) Delete(room, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.blobs, [2]string{room, id})
	return nil
}

// blobIndex is the server's account of stored blobs, by room and id.
type blobIndex struct {
	store BlobStore
	log   func(msg string, args ...any)

	mu    sync.Mutex
	rooms map[string]map[string]*blobEntry
	total int
}

type blobEntry struct {
	size    int
	expires time.Time
	stored  bool // Put has returned; until then the blob counts but cannot be read
	timer   *time.Timer
}

func newBlobIndex(store BlobStore, log func(msg string, args ...any)) *blobIndex {
	return &blobIndex{store: store, log: log, rooms: make(map[string]map[string]*blobEntry)}
}

// reserve counts a blob of size bytes against the quotas and returns it,
// or the error of the quota it would exceed.
func (x *blobIndex) reserve(cfg *Config, room, id string, size int, expires time.Time) *api.Error {
	x.mu.Lock()
	defer x.mu.Unlock()
	used := 0
	for _, e := range x.rooms[room] {
		used += e.size
	}
	switch {
	case used+size > cfg.RoomBlobBytes:
		return errorf(api.CodeRoomQuotaExceeded, "this call stores %d of its %d bytes of files; a file of %d bytes does not fit", used, cfg.RoomBlobBytes, size)
	case x.total+size > cfg.BlobStoreBytes:
		return errorf(api.CodeBlobStorageFull, "the server stores all the files it may now; try again later")
	}
	if x.rooms[room] == nil {
		x.rooms[room] = make(map[string]*blobEntry)
	}
	e := &blobEntry{size: size, expires: expires}
	e.timer = time.AfterFunc(time.Until(expires), func() { x.remove(room, id, e) })
	x.rooms[room][id] = e
	x.total += size
	return nil
}

// stored marks a reserved blob readable. It reports false if the blob was
// removed meanwhile (its room ended): the caller deletes what it stored.
func (x *blobIndex) stored(room, id string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.rooms[room][id]
	if e != nil {
		e.stored = true
	}
	return e != nil
}

// lookup returns a readable blob's entry.
func (x *blobIndex) lookup(room, id string) (blobEntry, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.rooms[room][id]
	if e == nil || !e.stored {
		return blobEntry{}, false
	}
	return *e, true
}

// remove forgets one blob (if e is still its entry) and deletes its bytes.
func (x *blobIndex) remove(room, id string, e *blobEntry) {
	x.mu.Lock()
	if x.rooms[room][id] != e {
		x.mu.Unlock()
		return
	}
	x.forgetLocked(room, id, e)
	x.mu.Unlock()
	x.delete(room, id)
}

// dropRoom forgets every blob of room and deletes their bytes in the
// background: callers hold Server.mu, and a store may be slow.
func (x *blobIndex) dropRoom(room string) {
	x.mu.Lock()
	blobs := x.rooms[room]
	ids := make([]string, 0, len(blobs))
	for id, e := range blobs {
		x.forgetLocked(room, id, e)
		ids = append(ids, id)
	}
	x.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	go func() {
		for _, id := range ids {
			x.delete(room, id)
		}
	}()
}

// dropBlob forgets a reserved blob whose bytes were never stored.
func (x *blobIndex) dropBlob(room, id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if e := x.rooms[room][id]; e != nil {
		x.forgetLocked(room, id, e)
	}
}

func (x *blobIndex) forgetLocked(room, id string, e *blobEntry) {
	e.timer.Stop()
	x.total -= e.size
	delete(x.rooms[room], id)
	if len(x.rooms[room]) == 0 {
		delete(x.rooms, room)
	}
}

func (x *blobIndex) delete(room, id string) {
	if err := x.store.Delete(room, id); err != nil {
		x.log("delete blob", "room", room, "blob", id, "err", err)
	}
}

// blobParticipant returns the participant of room whose session secret
// the request presents ("Authorization: Session <secret>"): only those in
// the call store and fetch its files.
func (s *Server) blobParticipant(r *http.Request, roomName string) (*participant, *api.Error) {
	if !token.ValidRoom(roomName) {
		return nil, errorf(api.CodeInvalidName, "room name must be 1-64 of A-Z a-z 0-9 _ -")
	}
	session, ok := authValue(r, "Session")
	if !ok {
		return nil, errorf(api.CodeUnauthorized, "missing session (Authorization: Session <session>)")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var found *participant
	if rm := s.rooms[roomName]; rm != nil {
		for _, p := range rm.participants {
			// Every session is compared, so the time taken tells nothing.
			if subtle.ConstantTimeCompare([]byte(session), []byte(p.session)) == 1 && p.active && !p.removed {
				found = p
			}
		}
	}
	if found == nil {
		return nil, errorf(api.CodeUnauthorized, "no participant of room %q with this session", roomName)
	}
	return found, nil
}

// handleBlobUpload serves POST /v1/rooms/{room}/blobs.
func (s *Server) handleBlobUpload(w http.ResponseWriter, r *http.Request) {
	roomName := r.PathValue("room")
	p, apiErr := s.blobParticipant(r, roomName)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	limit := s.cfg.MaxBlobBytes
	if r.ContentLength > int64(limit) {
		writeError(w, errorf(api.CodeBlobTooLarge, "file of %d bytes; the limit is %d", r.ContentLength, limit))
		return
	}
	data, apiErr := readBlob(w, r, limit)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	id := "b_" + randomSecret()
	expires := s.now().Add(s.cfg.BlobTTL)
	s.mu.Lock()
	if s.rooms[roomName] != p.room || p.removed {
		apiErr = errorf(api.CodeNotFound, "the call ended during the upload")
	} else {
		apiErr = s.blobs.reserve(&s.cfg, roomName, id, len(data), expires)
	}
	s.mu.Unlock()
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	if err := s.cfg.Blobs.Put(roomName, id, data); err != nil {
		s.log.Error("store blob", "room", roomName, "err", err)
		s.blobs.dropBlob(roomName, id)
		writeError(w, errorf(api.CodeInternal, "the file could not be stored"))
		return
	}
	if !s.blobs.stored(roomName, id) {
		s.blobs.delete(roomName, id)
		writeError(w, errorf(api.CodeNotFound, "the call ended during the upload"))
		return
	}
	s.log.Debug("blob stored", "room", roomName, "participant", p.id, "blob", id, "bytes", len(data))
	writeJSON(w, http.StatusCreated, api.BlobCreated{ID: id, Size: int64(len(data)), Expires: expires.Unix()})
}

// readBlob reads a request body of at most limit bytes. Each
// blobProgressBytes received extends the read deadline, so that a large
// file on a slow link arrives whole while a stalled one is cut off.
func readBlob(w http.ResponseWriter, r *http.Request, limit int) ([]byte, *api.Error) {
	rc := http.NewResponseController(w)
	body := http.MaxBytesReader(w, r.Body, int64(limit))
	buf := bytes.NewBuffer(make([]byte, 0, int(min(max(r.ContentLength, 0), int64(limit)))))
	for {
		_, err := io.CopyN(buf, body, blobProgressBytes)
		if err == io.EOF {
			// No deadline on what follows: the answer, the next request.
			_ = rc.SetReadDeadline(time.Time{})
			return buf.Bytes(), nil
		}
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return nil, errorf(api.CodeBlobTooLarge, "file larger than %d bytes, the limit", limit)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, errorf(api.CodeRequestTimeout, "the file did not arrive in time")
		case err != nil:
			return nil, errorf(api.CodeBadRequest, "reading the file: %v", err)
		}
		// Not every ResponseWriter has a deadline to extend (tests).
		_ = rc.SetReadDeadline(time.Now().Add(blobProgressTimeout))
	}
}

// handleBlobDownload serves GET /v1/rooms/{room}/blobs/{id}.
func (s *Server) handleBlobDownload(w http.ResponseWriter, r *http.Request) {
	roomName, id := r.PathValue("room"), r.PathValue("id")
	if _, apiErr := s.blobParticipant(r, roomName); apiErr != nil {
		writeError(w, apiErr)
		return
	}
	e, ok := s.blobs.lookup(roomName, id)
	if !ok {
		writeError(w, errorf(api.CodeBlobNotFound, "no file %q in this room: it expired, or belongs to another room", id))
		return
	}
	data, err := s.cfg.Blobs.Get(roomName, id)
	if err != nil {
		if errors.Is(err, ErrBlobNotFound) {
			writeError(w, errorf(api.CodeBlobNotFound, "no file %q in this room", id))
			return
		}
		s.log.Error("read blob", "room", roomName, "blob", id, "err", err)
		writeError(w, errorf(api.CodeInternal, "the file could not be read"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("Expires", e.expires.UTC().Format(http.TimeFormat))
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// checkBlobLimits reports blob limits that cannot work together.
func checkBlobLimits(cfg *Config) error {
	if cfg.MaxBlobBytes > cfg.RoomBlobBytes || cfg.RoomBlobBytes > cfg.BlobStoreBytes {
		return fmt.Errorf("signaling: blob limits must grow: file %d <= room %d <= server %d bytes", cfg.MaxBlobBytes, cfg.RoomBlobBytes, cfg.BlobStoreBytes)
	}
	return nil
}
