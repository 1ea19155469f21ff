package e2ee

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Encrypted files (docs/PROTOCOL.md §12): a fresh key per file, the
// plaintext cut into chunks of FileChunkSize, each sealed with AES-256-GCM
// under a nonce made of the chunk's counter and a last-chunk flag, in the
// manner of age's STREAM. Dropping, repeating, reordering or cutting chunks
// makes a chunk fail to open, so a receiver either gets the whole file as
// sent or an error.

const (
	// FileKeySize is the size of a file key (NewFileKey).
	FileKeySize = 32
	// FileChunkSize is the plaintext size of every chunk but the last.
	FileChunkSize = 64 << 10
	// FileHeaderSize is the size of the header that starts an encrypted file.
	FileHeaderSize = 8

	fileTagSize        = 16
	fileNonceSize      = 12
	encryptedChunkSize = FileChunkSize + fileTagSize
	fileKeyInfo        = "Sotto file v1"
)

// fileHeader is "SOTF", version 1, a zero byte and the chunk size in KiB:
// the only format there is, authenticated with every chunk.
var fileHeader = [FileHeaderSize]byte{'S', 'O', 'T', 'F', 0x01, 0x00, 0x00, FileChunkSize >> 10}

// ErrFileCorrupt reports an encrypted file that is not exactly what its
// sender wrote under the key: a chunk altered, missing, repeated, moved,
// cut short or followed by extra data, or the wrong key.
var ErrFileCorrupt = errors.New("e2ee: encrypted file is corrupt, truncated or reordered")

// NewFileKey returns a fresh file key, read from random (nil means
// crypto/rand). Use a key for one file only.
func NewFileKey(random io.Reader) ([]byte, error) {
	key := make([]byte, FileKeySize)
	if _, err := io.ReadFull(randOrDefault(random), key); err != nil {
		return nil, fmt.Errorf("new file key: %w", err)
	}
	return key, nil
}

// EncryptedFileSize returns the size of the encrypted form of a file of
// size plaintext bytes: the header and one tag per chunk (an empty file has
// one empty chunk).
func EncryptedFileSize(plaintext int64) int64 {
	chunks := max(1, (plaintext+FileChunkSize-1)/FileChunkSize)
	return FileHeaderSize + plaintext + chunks*fileTagSize
}

// fileAEAD derives the chunk cipher from a file key.
func fileAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != FileKeySize {
		return nil, fmt.Errorf("file key of %d bytes, want %d: %w", len(key), FileKeySize, ErrInvalidMessage)
	}
	k, err := hkdf.Key(sha256.New, key, zeroSalt[:], fileKeyInfo, 32)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// chunkNonce is the nonce of chunk counter: the counter as an 11-byte
// big-endian number, then 0x01 for the last chunk and 0x00 otherwise.
func chunkNonce(nonce *[fileNonceSize]byte, counter uint64, last bool) {
	*nonce = [fileNonceSize]byte{}
	binary.BigEndian.PutUint64(nonce[3:11], counter)
	if last {
		nonce[11] = 0x01
	}
}

// fileWriter encrypts what is written to it into dst.
type fileWriter struct {
	dst     io.Writer
	aead    cipher.AEAD
	buf     []byte // plaintext of the chunk being filled
	out     []byte // the sealed chunk
	nonce   [fileNonceSize]byte
	counter uint64
	err     error // sticky: the first write error, or ErrClosed-like after Close
}

var errWriterClosed = errors.New("e2ee: write to a closed file encrypter")

// EncryptFile returns a writer that encrypts what is written to it with
// key and writes the result to dst, starting with the header. Close it to
// seal the last chunk: without Close the file is incomplete, and a
// receiver refuses it. Close does not close dst.
func EncryptFile(dst io.Writer, key []byte) (io.WriteCloser, error) {
	aead, err := fileAEAD(key)
	if err != nil {
		return nil, fmt.Errorf("encrypt file: %w", err)
	}
	if _, err := dst.Write(fileHeader[:]); err != nil {
		return nil, fmt.Errorf("encrypt file: %w", err)
	}
	return &fileWriter{
		dst:  dst,
		aead: aead,
		buf:  make([]byte, 0, FileChunkSize),
		out:  make([]byte, 0, encryptedChunkSize),
	}, nil
}

// Write buffers p and writes every chunk it completes, except the last one
// so far: whether a full chunk is the file's last is known only at Close.
func (w *fileWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := 0
	for len(p) > 0 {
		if len(w.buf) == FileChunkSize {
			if err := w.seal(false); err != nil {
				return n, err
			}
		}
		c := copy(w.buf[len(w.buf):FileChunkSize], p)
		w.buf = w.buf[:len(w.buf)+c]
		p = p[c:]
		n += c
	}
	return n, nil
}

// Close seals and writes the last chunk.
func (w *fileWriter) Close() error {
	if w.err != nil {
		if w.err == errWriterClosed {
			return nil
		}
		return w.err
	}
	if err := w.seal(true); err != nil {
		return err
	}
	w.err = errWriterClosed
	return nil
}

func (w *fileWriter) seal(last bool) error {
	chunkNonce(&w.nonce, w.counter, last)
	w.out = w.aead.Seal(w.out[:0], w.nonce[:], w.buf, fileHeader[:])
	clear(w.buf)
	w.buf = w.buf[:0]
	w.counter++
	if _, err := w.dst.Write(w.out); err != nil {
		w.err = fmt.Errorf("encrypt file: %w", err)
		return w.err
	}
	return nil
}

// fileReader decrypts an encrypted file read from src.
type fileReader struct {
	src     io.Reader
	aead    cipher.AEAD
	in      []byte // encrypted bytes read ahead: up to one chunk and one byte
	plain   []byte // the last chunk opened
	pt      []byte // the part of plain not yet returned
	nonce   [fileNonceSize]byte
	counter uint64
	started bool // header checked
	done    bool // last chunk opened
	err     error
}

// DecryptFile returns a reader of the plaintext of the encrypted file read
// from src under key. Every byte it returns is authenticated: a chunk is
// returned only once it opens, and the end of the file is reported (io.EOF)
// only after the chunk sealed as the last one. A file that is not exactly
// what EncryptFile wrote under key fails with an error wrapping
// ErrFileCorrupt, possibly after earlier chunks were returned; errors of
// src are returned as they are.
func DecryptFile(src io.Reader, key []byte) (io.Reader, error) {
	aead, err := fileAEAD(key)
	if err != nil {
		return nil, fmt.Errorf("decrypt file: %w", err)
	}
	return &fileReader{
		src:   src,
		aead:  aead,
		in:    make([]byte, 0, encryptedChunkSize+1),
		plain: make([]byte, 0, FileChunkSize),
	}, nil
}

func (r *fileReader) Read(p []byte) (int, error) {
	for len(r.pt) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.err = r.next()
	}
	n := copy(p, r.pt)
	r.pt = r.pt[n:]
	return n, nil
}

// next reads and opens the next chunk into r.pt.
func (r *fileReader) next() error {
	if !r.started {
		var h [FileHeaderSize]byte
		if _, err := io.ReadFull(r.src, h[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Errorf("decrypt file: header cut short: %w", ErrFileCorrupt)
			}
			return err
		}
		if h != fileHeader {
			return fmt.Errorf("decrypt file: unknown header %x: %w", h, ErrFileCorrupt)
		}
		r.started = true
	}
	// Read one byte past a whole chunk: a chunk followed by more data is
	// not the last; one that ends the input must be sealed as the last.
	eof, err := r.fill(encryptedChunkSize + 1)
	if err != nil {
		return err
	}
	last := eof
	chunk := r.in
	if !last {
		chunk = r.in[:encryptedChunkSize]
	}
	if len(chunk) < fileTagSize {
		return fmt.Errorf("decrypt file: chunk %d cut short: %w", r.counter, ErrFileCorrupt)
	}
	chunkNonce(&r.nonce, r.counter, last)
	pt, err := r.aead.Open(r.plain[:0], r.nonce[:], chunk, fileHeader[:])
	if err != nil {
		return fmt.Errorf("decrypt file: chunk %d does not open: %w", r.counter, ErrFileCorrupt)
	}
	if last && len(pt) == 0 && r.counter > 0 {
		// Only an empty file ends with an empty chunk.
		return fmt.Errorf("decrypt file: empty last chunk %d: %w", r.counter, ErrFileCorrupt)
	}
	r.pt = pt
	r.counter++
	r.done = last
	// Keep what was read past the chunk (the byte read ahead).
	r.in = r.in[:copy(r.in, r.in[len(chunk):])]
	return nil
}

// fill reads from src until r.in holds n bytes or src ends (eof).
func (r *fileReader) fill(n int) (eof bool, err error) {
	for len(r.in) < n {
		m, err := r.src.Read(r.in[len(r.in):n])
		r.in = r.in[:len(r.in)+m]
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}
