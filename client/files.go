package client

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/e2ee"
)

// This file is a call's files (docs/PROTOCOL.md §12): the sender encrypts
// a file under a fresh key as it reads it and uploads only the ciphertext
// to the server's blob store; the key, the digest of the ciphertext, the
// name, type and size travel in an end-to-end message (messages.go).

// SendFile encrypts what r yields under a fresh key, uploads the
// ciphertext to the server (POST /v1/rooms/{room}/blobs) and sends every
// participant whose session is set up a message with the key, the name,
// the media type (may be empty) and the size. The server sees neither the
// name, the type nor a byte of the content; it refuses a file over its size
// cap (api.CodeBlobTooLarge) or over the room's quota
// (api.CodeRoomQuotaExceeded). r is read to its end. While the call
// reconnects it fails with ErrReconnecting.
func (c *Call) SendFile(ctx context.Context, name, mediaType string, r io.Reader) (SentMessage, error) {
	return c.sendFile(ctx, "", name, mediaType, r)
}

// SendFileTo is SendFile to one participant only.
func (c *Call) SendFileTo(ctx context.Context, participantID, name, mediaType string, r io.Reader) (SentMessage, error) {
	if participantID == "" {
		return SentMessage{}, ErrUnknownParticipant
	}
	return c.sendFile(ctx, participantID, name, mediaType, r)
}

func (c *Call) sendFile(ctx context.Context, only, name, mediaType string, r io.Reader) (SentMessage, error) {
	key, err := e2ee.NewFileKey(nil)
	if err != nil {
		return SentMessage{}, err
	}
	defer clear(key)
	// Check the name and type before uploading anything.
	ref := e2ee.FileRef{BlobID: "x", Key: key, Digest: make([]byte, e2ee.FileDigestSize), Name: name, Type: mediaType}
	if _, err := (e2ee.Message{Seq: 1, File: &ref}).MarshalBinary(); err != nil {
		return SentMessage{}, fmt.Errorf("client: send file: %w", err)
	}
	up, err := c.uploadFile(ctx, key, r)
	if err != nil {
		return SentMessage{}, fmt.Errorf("client: send file %q: %w", name, err)
	}
	ref.BlobID, ref.Digest, ref.Size = up.id, up.digest, up.size
	return c.sendMessage(ctx, only, e2ee.Message{File: &ref, Direct: only != ""})
}

// upload is a file stored on the server.
type upload struct {
	id     string
	digest []byte // SHA-256 of the ciphertext
	size   int64  // of the plaintext
}

// uploadFile encrypts r as it streams it to the blob store.
func (c *Call) uploadFile(ctx context.Context, key []byte, r io.Reader) (upload, error) {
	pr, pw := io.Pipe()
	h := sha256.New()
	type encrypted struct {
		size int64
		err  error
	}
	done := make(chan encrypted, 1)
	go func() {
		var n int64
		w, err := e2ee.EncryptFile(io.MultiWriter(pw, h), key)
		if err == nil {
			n, err = io.Copy(w, r)
			if err == nil {
				err = w.Close()
			}
		}
		pw.CloseWithError(err)
		done <- encrypted{n, err}
	}()
	var bc api.BlobCreated
	err := c.blobRequest(ctx, http.MethodPost, "", pr, func(body io.Reader) error {
		return json.NewDecoder(io.LimitReader(body, maxResponseBytes)).Decode(&bc)
	})
	// The request may end before the body does (a refusal); stop the
	// encryption then.
	pr.CloseWithError(io.ErrClosedPipe)
	enc := <-done
	switch {
	case enc.err != nil && !errors.Is(enc.err, io.ErrClosedPipe):
		return upload{}, fmt.Errorf("read the file: %w", enc.err)
	case err != nil:
		return upload{}, err
	case enc.err != nil:
		return upload{}, fmt.Errorf("upload ended early: %w", enc.err)
	case bc.Size != e2ee.EncryptedFileSize(enc.size):
		return upload{}, fmt.Errorf("the server stored %d bytes of %d", bc.Size, e2ee.EncryptedFileSize(enc.size))
	}
	return upload{id: bc.ID, digest: h.Sum(nil), size: enc.size}, nil
}

// ReceiveFile downloads the ciphertext of f (from a Message), checks and
// decrypts it, and writes the file to w. Every byte written has been
// authenticated as the sender's; but a file the server altered, cut or
// swapped fails with an error wrapping e2ee.ErrFileCorrupt, possibly after
// a first part was written: discard what w got then. A file the server no
// longer holds fails with api.CodeBlobNotFound. While the call reconnects
// it fails with ErrReconnecting.
func (c *Call) ReceiveFile(ctx context.Context, f *File, w io.Writer) error {
	if f == nil {
		return fmt.Errorf("client: receive file: no file")
	}
	err := c.blobRequest(ctx, http.MethodGet, f.ref.BlobID, nil, func(body io.Reader) error {
		h := sha256.New()
		// A blob longer than the file's ciphertext is not the file.
		want := e2ee.EncryptedFileSize(f.Size)
		pt, err := e2ee.DecryptFile(io.TeeReader(io.LimitReader(body, want+1), h), f.ref.Key)
		if err != nil {
			return err
		}
		n, err := io.Copy(w, pt)
		switch {
		case err != nil:
			return err
		case n != f.Size:
			return fmt.Errorf("%d bytes, the sender announced %d: %w", n, f.Size, e2ee.ErrFileCorrupt)
		case subtle.ConstantTimeCompare(h.Sum(nil), f.ref.Digest) != 1:
			return fmt.Errorf("digest differs from the sender's: %w", e2ee.ErrFileCorrupt)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("client: receive file %q: %w", f.Name, err)
	}
	return nil
}

// blobRequest makes a request of the blob routes with the session secret
// of the call's current join and gives a 2xx response body to read.
func (c *Call) blobRequest(ctx context.Context, method, id string, body io.Reader, read func(io.Reader) error) error {
	s := c.session()
	if s == nil {
		return c.reconnecting()
	}
	path := api.Version + "/rooms/" + url.PathEscape(c.claims.Room) + "/blobs"
	if id != "" {
		path += "/" + url.PathEscape(id)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.api.url(path), body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Session "+s.conn.session)
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := c.api.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		return fmt.Errorf("%s %s: %w", method, path, responseError(resp.StatusCode, data))
	}
	return read(resp.Body)
}
