package e2ee

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"
)

const messageVectorsPath = "testdata/sotto-message-vectors.json"

// The vectors of docs/PROTOCOL.md §11 and §12: message and receipt
// contents, encrypted files and the damaged files a reader must refuse.

type messageVector struct {
	Seq     string         `json:"seq"`     // decimal
	SentMs  string         `json:"sent_ms"` // decimal, Unix milliseconds
	Direct  bool           `json:"direct"`
	Text    string         `json:"text,omitempty"`
	File    *fileRefVector `json:"file,omitempty"`
	Encoded hexBytes       `json:"encoded"`
}

type fileRefVector struct {
	BlobID string   `json:"blob_id"`
	Key    hexBytes `json:"key"`
	Digest hexBytes `json:"digest"`
	Size   int64    `json:"size"`
	Name   string   `json:"name"`
	Type   string   `json:"type"`
}

type receiptVector struct {
	Seq     string   `json:"seq"`
	Encoded hexBytes `json:"encoded"`
}

type chunkVector struct {
	Nonce hexBytes `json:"nonce"`
	Size  int      `json:"size"` // bytes of ciphertext and tag
	Tag   hexBytes `json:"tag"`
}

type fileVector struct {
	Name    string   `json:"name"`
	Key     hexBytes `json:"key"`
	AEADKey hexBytes `json:"aead_key"`
	Header  hexBytes `json:"header"`
	// PlaintextSize bytes, byte i being i mod 251.
	PlaintextSize int           `json:"plaintext_size"`
	Chunks        []chunkVector `json:"chunks"`
	// Ciphertext is the whole encrypted file when it is short.
	Ciphertext hexBytes `json:"ciphertext,omitempty"`
	Digest     hexBytes `json:"ciphertext_sha256"`
}

// corruptVector damages the encrypted file named File; decrypting the
// result must fail. Op is flip (Offset: the byte whose lowest bit flips),
// truncate (to Length bytes), swap (chunks A and B), drop (chunk A),
// duplicate (chunk A, inserted again after itself) or append (Bytes).
type corruptVector struct {
	File   string   `json:"file"`
	Op     string   `json:"op"`
	Offset int      `json:"offset"`
	Length int      `json:"length"`
	A      int      `json:"a"`
	B      int      `json:"b"`
	Bytes  hexBytes `json:"bytes,omitempty"`
}

type messageVectors struct {
	Comment  string          `json:"comment"`
	Messages []messageVector `json:"messages"`
	Receipts []receiptVector `json:"receipts"`
	Files    []fileVector    `json:"files"`
	Corrupt  []corruptVector `json:"corrupt"`
}

func generateMessageVectors(t *testing.T) messageVectors {
	v := messageVectors{Comment: "Sotto messages and files (docs/PROTOCOL.md §11, §12). Byte strings are hex; seq and sent_ms are decimal strings. Regenerate: go test ./e2ee -run TestMessageVectors -update"}
	rnd := &drbg{label: "sotto message vectors"}
	sent := time.UnixMilli(1767225600123)
	key := func() hexBytes {
		k, err := NewFileKey(rnd)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	digest := sha256.Sum256([]byte("an encrypted file"))
	for _, m := range []Message{
		{Seq: 1, Sent: sent, Text: "Hello, is this private?"},
		{Seq: 2, Sent: sent.Add(1500 * time.Millisecond), Direct: true, Text: "Only you see this: ünïcödé ✓"},
		{Seq: 3, Sent: sent.Add(time.Minute), File: &FileRef{BlobID: "b_k2m4q7s9v1x3z5a8", Key: key(), Digest: digest[:], Size: 5 << 20, Name: "holiday plans.pdf", Type: "application/pdf"}},
		{Seq: 1 << 40, Sent: sent, Direct: true, File: &FileRef{BlobID: "z", Key: key(), Digest: digest[:], Size: 0, Name: "empty", Type: ""}},
	} {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		mv := messageVector{Seq: strconv.FormatUint(m.Seq, 10), SentMs: strconv.FormatInt(m.Sent.UnixMilli(), 10), Direct: m.Direct, Text: m.Text, Encoded: b}
		if f := m.File; f != nil {
			mv.File = &fileRefVector{BlobID: f.BlobID, Key: f.Key, Digest: f.Digest, Size: f.Size, Name: f.Name, Type: f.Type}
		}
		v.Messages = append(v.Messages, mv)
	}
	for _, seq := range []uint64{1, 1<<64 - 1} {
		b, err := Receipt{Seq: seq}.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		v.Receipts = append(v.Receipts, receiptVector{Seq: strconv.FormatUint(seq, 10), Encoded: b})
	}
	for _, f := range []struct {
		name string
		size int
	}{
		{"empty", 0}, {"short", 41}, {"one full chunk", FileChunkSize}, {"a chunk and a byte", FileChunkSize + 1}, {"three chunks", 2*FileChunkSize + 1000},
	} {
		k := key()
		ct := encryptAll(t, k, patterned(f.size), FileChunkSize)
		aeadKey, err := hkdf.Key(sha256.New, k, zeroSalt[:], fileKeyInfo, 32)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(ct)
		fv := fileVector{Name: f.name, Key: k, AEADKey: aeadKey, Header: fileHeader[:], PlaintextSize: f.size, Digest: sum[:]}
		_, cs := chunks(ct)
		for i, c := range cs {
			var nonce [fileNonceSize]byte
			chunkNonce(&nonce, uint64(i), i == len(cs)-1)
			fv.Chunks = append(fv.Chunks, chunkVector{Nonce: bytes.Clone(nonce[:]), Size: len(c), Tag: c[len(c)-fileTagSize:]})
		}
		if len(ct) <= 1024 {
			fv.Ciphertext = ct
		}
		v.Files = append(v.Files, fv)
	}
	const three = "three chunks"
	second := FileHeaderSize + encryptedChunkSize
	v.Corrupt = []corruptVector{
		{File: "short", Op: "flip", Offset: 0},
		{File: "short", Op: "flip", Offset: 4},
		{File: "short", Op: "flip", Offset: FileHeaderSize},
		{File: "short", Op: "flip", Offset: FileHeaderSize + 41 + 15},
		{File: "short", Op: "truncate", Length: FileHeaderSize + 41 + 15},
		{File: "short", Op: "truncate", Length: FileHeaderSize},
		{File: "short", Op: "append", Bytes: []byte{0}},
		{File: "empty", Op: "truncate", Length: 0},
		{File: "one full chunk", Op: "append", Bytes: make([]byte, fileTagSize)},
		{File: three, Op: "flip", Offset: second + 100},
		{File: three, Op: "truncate", Length: second},
		{File: three, Op: "truncate", Length: second + encryptedChunkSize},
		{File: three, Op: "swap", A: 0, B: 1},
		{File: three, Op: "swap", A: 1, B: 2},
		{File: three, Op: "drop", A: 1},
		{File: three, Op: "duplicate", A: 0},
	}
	return v
}

// damage applies a corrupt vector to ct.
func damage(t *testing.T, c corruptVector, ct []byte) []byte {
	t.Helper()
	h, cs := chunks(bytes.Clone(ct))
	switch c.Op {
	case "flip":
		out := bytes.Clone(ct)
		out[c.Offset] ^= 0x01
		return out
	case "truncate":
		return bytes.Clone(ct[:c.Length])
	case "swap":
		cs[c.A], cs[c.B] = cs[c.B], cs[c.A]
	case "drop":
		cs = append(cs[:c.A:c.A], cs[c.A+1:]...)
	case "duplicate":
		cs = append(cs[:c.A+1:c.A+1], cs[c.A:]...)
	case "append":
		return append(bytes.Clone(ct), c.Bytes...)
	default:
		t.Fatalf("unknown op %q", c.Op)
	}
	return join(h, cs...)
}

func TestMessageVectors(t *testing.T) {
	checkVectorFile(t, messageVectorsPath, generateMessageVectors(t))
}

// TestMessageVectorsConsumer reads the vectors as another implementation
// would: every message and receipt parses to its fields, every file
// decrypts to its plaintext and every damaged one fails.
func TestMessageVectorsConsumer(t *testing.T) {
	var v messageVectors
	readVectorFile(t, messageVectorsPath, &v)
	for _, mv := range v.Messages {
		m, err := ParseMessage(mv.Encoded)
		if err != nil {
			t.Fatal(err)
		}
		if strconv.FormatUint(m.Seq, 10) != mv.Seq || strconv.FormatInt(m.Sent.UnixMilli(), 10) != mv.SentMs || m.Direct != mv.Direct || m.Text != mv.Text || (m.File == nil) != (mv.File == nil) {
			t.Fatalf("message %s: fields differ", mv.Seq)
		}
		if f := m.File; f != nil && (f.BlobID != mv.File.BlobID || !bytes.Equal(f.Key, mv.File.Key) || !bytes.Equal(f.Digest, mv.File.Digest) ||
			f.Size != mv.File.Size || f.Name != mv.File.Name || f.Type != mv.File.Type) {
			t.Fatalf("message %s: file fields differ", mv.Seq)
		}
	}
	for _, rv := range v.Receipts {
		r, err := ParseReceipt(rv.Encoded)
		if err != nil || strconv.FormatUint(r.Seq, 10) != rv.Seq {
			t.Fatalf("receipt %s: %v", rv.Seq, err)
		}
	}
	files := map[string][]byte{}
	for _, fv := range v.Files {
		ct := encryptAll(t, fv.Key, patterned(fv.PlaintextSize), 1000)
		sum := sha256.Sum256(ct)
		if !bytes.Equal(sum[:], fv.Digest) || (fv.Ciphertext != nil && !bytes.Equal(ct, fv.Ciphertext)) {
			t.Fatalf("%s: ciphertext differs", fv.Name)
		}
		_, cs := chunks(ct)
		if len(cs) != len(fv.Chunks) {
			t.Fatalf("%s: %d chunks, want %d", fv.Name, len(cs), len(fv.Chunks))
		}
		for i, c := range cs {
			if len(c) != fv.Chunks[i].Size || !bytes.Equal(c[len(c)-fileTagSize:], fv.Chunks[i].Tag) {
				t.Fatalf("%s: chunk %d differs", fv.Name, i)
			}
		}
		pt, err := decryptAll(fv.Key, ct)
		if err != nil || !bytes.Equal(pt, patterned(fv.PlaintextSize)) {
			t.Fatalf("%s: decrypts to %d bytes, %v", fv.Name, len(pt), err)
		}
		files[fv.Name] = ct
	}
	keys := map[string][]byte{}
	for _, fv := range v.Files {
		keys[fv.Name] = fv.Key
	}
	for i, c := range v.Corrupt {
		if _, err := decryptAll(keys[c.File], damage(t, c, files[c.File])); !errors.Is(err, ErrFileCorrupt) {
			t.Errorf("corrupt[%d] %s of %q: %v, want ErrFileCorrupt", i, c.Op, c.File, err)
		}
	}
}

// checkVectorFile compares the vectors generated now with those in path,
// rewriting the file first under -update.
func checkVectorFile(t *testing.T, path string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the regenerated vectors; run with -update if the protocol changed on purpose", path)
	}
}

func readVectorFile(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}
