package e2ee

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func testFileRef() *FileRef {
	return &FileRef{
		BlobID: "b_0123456789abcdef",
		Key:    bytes.Repeat([]byte{7}, FileKeySize),
		Digest: bytes.Repeat([]byte{9}, FileDigestSize),
		Size:   5 << 20,
		Name:   "plans for the café.pdf",
		Type:   "application/pdf",
	}
}

func TestMessageRoundTrip(t *testing.T) {
	sent := time.UnixMilli(1767225600123)
	for _, m := range []Message{
		{Seq: 1, Sent: sent, Text: "hello"},
		{Seq: 1<<64 - 1, Sent: sent, Direct: true, Text: strings.Repeat("é", MaxMessageText/2)},
		{Seq: 2, Sent: sent, File: testFileRef()},
		{Seq: 3, Sent: sent, Direct: true, File: &FileRef{BlobID: "x", Key: make([]byte, 32), Digest: make([]byte, 32), Name: "n"}},
	} {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if ContentTypeOf(b) != ContentMessage {
			t.Fatalf("content type %#x", b[0])
		}
		got, err := ParseMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Seq != m.Seq || !got.Sent.Equal(m.Sent) || got.Direct != m.Direct || got.Text != m.Text || (got.File == nil) != (m.File == nil) {
			t.Fatalf("round trip: %+v, want %+v", got, m)
		}
		if m.File != nil {
			f, w := got.File, m.File
			if f.BlobID != w.BlobID || !bytes.Equal(f.Key, w.Key) || !bytes.Equal(f.Digest, w.Digest) || f.Size != w.Size || f.Name != w.Name || f.Type != w.Type {
				t.Fatalf("file: %+v, want %+v", f, w)
			}
		}
		// Every truncation, and anything appended to a file message, fails.
		for n := range b {
			if _, err := ParseMessage(b[:n]); err == nil && m.File != nil {
				t.Fatalf("file message cut to %d bytes parses", n)
			}
		}
		if m.File != nil {
			if _, err := ParseMessage(append(bytes.Clone(b), 0)); !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("trailing byte: %v", err)
			}
		}
	}
}

func TestMessageRefusals(t *testing.T) {
	f := func(edit func(*FileRef)) *FileRef {
		r := testFileRef()
		edit(r)
		return r
	}
	for name, m := range map[string]Message{
		"sequence 0":      {Text: "x"},
		"no text":         {Seq: 1},
		"long text":       {Seq: 1, Text: strings.Repeat("a", MaxMessageText+1)},
		"invalid UTF-8":   {Seq: 1, Text: "\xff"},
		"text and file":   {Seq: 1, Text: "x", File: testFileRef()},
		"no blob":         {Seq: 1, File: f(func(r *FileRef) { r.BlobID = "" })},
		"blob with slash": {Seq: 1, File: f(func(r *FileRef) { r.BlobID = "../x" })},
		"long blob":       {Seq: 1, File: f(func(r *FileRef) { r.BlobID = strings.Repeat("a", MaxBlobIDSize+1) })},
		"short key":       {Seq: 1, File: f(func(r *FileRef) { r.Key = r.Key[:16] })},
		"short digest":    {Seq: 1, File: f(func(r *FileRef) { r.Digest = nil })},
		"negative size":   {Seq: 1, File: f(func(r *FileRef) { r.Size = -1 })},
		"no name":         {Seq: 1, File: f(func(r *FileRef) { r.Name = "" })},
		"long name":       {Seq: 1, File: f(func(r *FileRef) { r.Name = strings.Repeat("n", MaxFileNameSize+1) })},
		"type with NUL":   {Seq: 1, File: f(func(r *FileRef) { r.Type = "a\x00" })},
	} {
		if _, err := m.MarshalBinary(); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: marshal: %v, want ErrInvalidMessage", name, err)
		}
	}
	good, _ := Message{Seq: 1, Sent: time.UnixMilli(1), Text: "hi"}.MarshalBinary()
	for name, edit := range map[string]func([]byte){
		"frame key type": func(b []byte) { b[0] = byte(ContentFrameKey) },
		"unknown flag":   func(b []byte) { b[17] = 0x02 },
		"unknown kind":   func(b []byte) { b[18] = 0x09 },
		"sequence 0":     func(b []byte) { clear(b[1:9]) },
		"far future":     func(b []byte) { b[9] = 0xff },
	} {
		b := bytes.Clone(good)
		edit(b)
		if _, err := ParseMessage(b); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: parse: %v, want ErrInvalidMessage", name, err)
		}
	}
}

func TestReceipt(t *testing.T) {
	b, err := Receipt{Seq: 42}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ParseReceipt(b); err != nil || r.Seq != 42 {
		t.Fatalf("%+v, %v", r, err)
	}
	for _, bad := range [][]byte{b[:8], append(bytes.Clone(b), 0), {byte(ContentReceipt), 0, 0, 0, 0, 0, 0, 0, 0}, append([]byte{byte(ContentMessage)}, b[1:]...)} {
		if _, err := ParseReceipt(bad); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("% x: %v", bad, err)
		}
	}
	if _, err := (Receipt{}).MarshalBinary(); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("receipt of 0: %v", err)
	}
}
