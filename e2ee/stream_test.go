package e2ee

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// patterned returns n bytes, byte i being i mod 251 (a prime, so chunks
// differ from each other).
func patterned(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// encryptAll encrypts pt under key, writing it in pieces of step bytes.
func encryptAll(t testing.TB, key, pt []byte, step int) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := EncryptFile(&out, key)
	if err != nil {
		t.Fatal(err)
	}
	for p := pt; len(p) > 0; {
		n := min(step, len(p))
		if m, err := w.Write(p[:n]); err != nil || m != n {
			t.Fatalf("write: %d, %v", m, err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func decryptAll(key, ct []byte) ([]byte, error) {
	r, err := DecryptFile(bytes.NewReader(ct), key)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func testKey(t testing.TB, label string) []byte {
	t.Helper()
	k, err := NewFileKey(&drbg{label: label})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestFileRoundTrip(t *testing.T) {
	key := testKey(t, "round trip")
	for _, n := range []int{0, 1, 100, FileChunkSize - 1, FileChunkSize, FileChunkSize + 1, 2 * FileChunkSize, 3*FileChunkSize + 17} {
		pt := patterned(n)
		for _, step := range []int{1 << 20, 1000, FileChunkSize} {
			ct := encryptAll(t, key, pt, step)
			if int64(len(ct)) != EncryptedFileSize(int64(n)) {
				t.Fatalf("%d bytes: ciphertext of %d bytes, EncryptedFileSize says %d", n, len(ct), EncryptedFileSize(int64(n)))
			}
			if !bytes.Equal(ct[:FileHeaderSize], fileHeader[:]) {
				t.Fatalf("header % x", ct[:FileHeaderSize])
			}
			// Small reads, and a source that returns one byte at a time.
			r, err := DecryptFile(iotest.OneByteReader(bytes.NewReader(ct)), key)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(iotest.OneByteReader(r))
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("%d bytes written by %d: decrypted %d bytes, %v", n, step, len(got), err)
			}
		}
	}
}

func TestFileEncryptionIsFreshPerKey(t *testing.T) {
	pt := patterned(1000)
	a := encryptAll(t, testKey(t, "a"), pt, len(pt))
	b := encryptAll(t, testKey(t, "b"), pt, len(pt))
	if bytes.Equal(a, b) {
		t.Fatal("two keys give the same ciphertext")
	}
	if bytes.Contains(a, pt[:64]) {
		t.Fatal("plaintext appears in the ciphertext")
	}
}

// chunks splits an encrypted file into its header and its chunks.
func chunks(ct []byte) (header []byte, cs [][]byte) {
	header, rest := ct[:FileHeaderSize], ct[FileHeaderSize:]
	for len(rest) > encryptedChunkSize {
		cs = append(cs, rest[:encryptedChunkSize])
		rest = rest[encryptedChunkSize:]
	}
	return header, append(cs, rest)
}

func join(header []byte, cs ...[]byte) []byte {
	return bytes.Join(append([][]byte{header}, cs...), nil)
}

// TestFileRefusesTampering: every change to an encrypted file of three
// chunks fails with ErrFileCorrupt: a flipped bit anywhere, a cut at any
// chunk boundary or inside a chunk, chunks swapped, dropped or repeated,
// data appended, another header, another key.
func TestFileRefusesTampering(t *testing.T) {
	key := testKey(t, "tamper")
	pt := patterned(2*FileChunkSize + 500)
	ct := encryptAll(t, key, pt, len(pt))
	h, cs := chunks(ct)
	if len(cs) != 3 {
		t.Fatalf("%d chunks, want 3", len(cs))
	}
	cases := map[string][]byte{
		"swap 0 and 1":            join(h, cs[1], cs[0], cs[2]),
		"drop the middle chunk":   join(h, cs[0], cs[2]),
		"drop the last chunk":     join(h, cs[0], cs[1]),
		"repeat the first chunk":  join(h, cs[0], cs[0], cs[1], cs[2]),
		"last chunk moved first":  join(h, cs[2], cs[0], cs[1]),
		"one byte appended":       append(bytes.Clone(ct), 0),
		"a chunk appended":        join(h, cs[0], cs[1], cs[2], cs[1]),
		"header only":             bytes.Clone(h),
		"nothing":                 {},
		"cut inside the header":   bytes.Clone(ct[:5]),
		"cut inside the last tag": bytes.Clone(ct[:len(ct)-1]),
		"cut inside a chunk":      bytes.Clone(ct[:FileHeaderSize+1000]),
		"version 2 header":        append([]byte{'S', 'O', 'T', 'F', 2, 0, 0, 64}, ct[FileHeaderSize:]...),
	}
	for name, bad := range cases {
		if _, err := decryptAll(key, bad); !errors.Is(err, ErrFileCorrupt) {
			t.Errorf("%s: %v, want ErrFileCorrupt", name, err)
		}
	}
	for i := range ct {
		// Every byte of the header and of the first chunk's start and
		// tag, and a sample of the rest.
		if i > 64 && i%997 != 0 && (i < FileHeaderSize+encryptedChunkSize-16 || i >= FileHeaderSize+encryptedChunkSize) {
			continue
		}
		bad := bytes.Clone(ct)
		bad[i] ^= 0x01
		if _, err := decryptAll(key, bad); !errors.Is(err, ErrFileCorrupt) {
			t.Fatalf("bit flipped at %d: %v, want ErrFileCorrupt", i, err)
		}
	}
	if _, err := decryptAll(testKey(t, "other"), ct); !errors.Is(err, ErrFileCorrupt) {
		t.Errorf("another key: %v, want ErrFileCorrupt", err)
	}
	// A file of whole chunks, cut after any of them, lacks its last chunk.
	whole := encryptAll(t, key, patterned(2*FileChunkSize), FileChunkSize)
	if _, err := decryptAll(key, whole[:FileHeaderSize+encryptedChunkSize]); !errors.Is(err, ErrFileCorrupt) {
		t.Errorf("full chunks cut at a boundary: %v, want ErrFileCorrupt", err)
	}
	// An empty chunk after full ones is not how a file ends.
	empty := encryptAll(t, key, nil, 1)
	if _, err := decryptAll(key, append(bytes.Clone(whole[:FileHeaderSize+encryptedChunkSize]), empty[FileHeaderSize:]...)); !errors.Is(err, ErrFileCorrupt) {
		t.Errorf("empty last chunk after a full one: %v, want ErrFileCorrupt", err)
	}
}

// TestFileDecryptStopsAtTheBadChunk: the chunks before a tampered one are
// returned (they authenticate); nothing of the bad chunk or after it is.
func TestFileDecryptStopsAtTheBadChunk(t *testing.T) {
	key := testKey(t, "partial")
	pt := patterned(3 * FileChunkSize)
	ct := encryptAll(t, key, pt, len(pt))
	ct[FileHeaderSize+encryptedChunkSize+10] ^= 0x80
	got, err := decryptAll(key, ct)
	if !errors.Is(err, ErrFileCorrupt) {
		t.Fatalf("%v, want ErrFileCorrupt", err)
	}
	if !bytes.Equal(got, pt[:FileChunkSize]) {
		t.Fatalf("returned %d bytes, want exactly the first chunk", len(got))
	}
}

func TestFileSourceErrors(t *testing.T) {
	key := testKey(t, "errors")
	ct := encryptAll(t, key, patterned(FileChunkSize+10), 4096)
	boom := errors.New("network down")
	r, err := DecryptFile(io.MultiReader(bytes.NewReader(ct[:100]), iotest.ErrReader(boom)), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, boom) || errors.Is(err, ErrFileCorrupt) {
		t.Fatalf("%v, want the source's error as it is", err)
	}
	if _, err := DecryptFile(bytes.NewReader(ct), key[:16]); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("short key: %v", err)
	}
	if _, err := EncryptFile(io.Discard, nil); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("no key: %v", err)
	}
	w, err := EncryptFile(&failingWriter{after: 1}, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(patterned(FileChunkSize + 1)); !errors.Is(err, errShortDisk) {
		t.Fatalf("write: %v, want the destination's error", err)
	}
	if err := w.Close(); !errors.Is(err, errShortDisk) {
		t.Fatalf("close after a failed write: %v", err)
	}
	w, _ = EncryptFile(io.Discard, key)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := w.Write([]byte{1}); err == nil {
		t.Fatal("write after close succeeded")
	}
}

var errShortDisk = errors.New("disk full")

// failingWriter accepts after writes, then fails.
type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after == 0 {
		return 0, errShortDisk
	}
	w.after--
	return len(p), nil
}

func BenchmarkFileEncrypt(b *testing.B) {
	key := testKey(b, "bench")
	pt := patterned(FileChunkSize)
	w, _ := EncryptFile(io.Discard, key)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		w.Write(pt)
	}
}

func BenchmarkFileDecrypt(b *testing.B) {
	key := testKey(b, "bench")
	ct := encryptAll(b, key, patterned(16*FileChunkSize), FileChunkSize)
	buf := make([]byte, 32<<10)
	b.SetBytes(16 * FileChunkSize)
	for b.Loop() {
		r, _ := DecryptFile(bytes.NewReader(ct), key)
		if _, err := io.CopyBuffer(io.Discard, r, buf); err != nil {
			b.Fatal(err)
		}
	}
}
