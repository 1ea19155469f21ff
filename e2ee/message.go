package e2ee

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"
)

// Messages between participants (docs/PROTOCOL.md §5.4, §11): ratchet
// plaintexts sent in the Double Ratchet session with each recipient, one
// copy per recipient, and the receipts recipients send back.

// Content types of messages and their receipts.
const (
	ContentMessage ContentType = 0x03
	ContentReceipt ContentType = 0x04
)

// Limits of a message's fields, in bytes.
const (
	MaxMessageText  = 4096
	MaxFileNameSize = 255
	MaxFileTypeSize = 127
	MaxBlobIDSize   = 64
	FileDigestSize  = 32
)

const (
	messageHeaderSize = 19 // type, seq, sent, flags, kind
	receiptSize       = 9

	kindText byte = 0x01
	kindFile byte = 0x02

	flagDirect byte = 0x01
)

// Message is a text or a file offer from one participant to another. Seq
// numbers the messages of one sender to one recipient, from 1, in sending
// order; the recipient refuses one that is not above the last it took, so
// that what it shows is in the order sent, and a gap tells it that a
// message was lost.
type Message struct {
	Seq uint64
	// Sent is the sender's clock when it sent the message, in milliseconds.
	Sent time.Time
	// Direct marks a message sent to this recipient alone.
	Direct bool
	// Text is the text of a text message (1 to MaxMessageText bytes of
	// UTF-8); empty for a file.
	Text string
	// File is the file of a file message; nil for text.
	File *FileRef
}

// FileRef is what a recipient needs to fetch and decrypt a file: where the
// ciphertext is stored and the key, with what the file is.
type FileRef struct {
	// BlobID names the ciphertext on the server (1 to MaxBlobIDSize of
	// A-Z a-z 0-9 _ -).
	BlobID string
	// Key is the file key (FileKeySize bytes).
	Key []byte
	// Digest is the SHA-256 of the whole encrypted file, as stored.
	Digest []byte
	// Size is the plaintext size in bytes.
	Size int64
	// Name is the file's name (1 to MaxFileNameSize bytes of UTF-8) and
	// Type its media type (up to MaxFileTypeSize printable ASCII bytes,
	// empty when unknown); neither is ever seen by the server.
	Name string
	Type string
}

// MarshalBinary encodes the message content (content type 0x03).
func (m Message) MarshalBinary() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("marshal message: %w", err)
	}
	b := make([]byte, 0, messageHeaderSize+len(m.Text)+128)
	b = append(b, byte(ContentMessage))
	b = binary.BigEndian.AppendUint64(b, m.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Sent.UnixMilli()))
	var flags byte
	if m.Direct {
		flags |= flagDirect
	}
	b = append(b, flags)
	if m.File == nil {
		b = append(b, kindText)
		return append(b, m.Text...), nil
	}
	f := m.File
	b = append(b, kindFile)
	b = append(b, f.Key...)
	b = append(b, f.Digest...)
	b = binary.BigEndian.AppendUint64(b, uint64(f.Size))
	b = append(b, byte(len(f.BlobID)))
	b = append(b, f.BlobID...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(f.Name)))
	b = append(b, f.Name...)
	b = append(b, byte(len(f.Type)))
	return append(b, f.Type...), nil
}

// ParseMessage decodes a message content.
func ParseMessage(b []byte) (Message, error) {
	if len(b) < messageHeaderSize || ContentType(b[0]) != ContentMessage {
		return Message{}, fmt.Errorf("parse message: %w", ErrInvalidMessage)
	}
	sent := binary.BigEndian.Uint64(b[9:17])
	m := Message{
		Seq:    binary.BigEndian.Uint64(b[1:9]),
		Sent:   time.UnixMilli(int64(sent)),
		Direct: b[17]&flagDirect != 0,
	}
	if b[17]&^flagDirect != 0 || sent > 1<<62 {
		return Message{}, fmt.Errorf("parse message: %w", ErrInvalidMessage)
	}
	body := b[messageHeaderSize:]
	switch b[18] {
	case kindText:
		m.Text = string(body)
	case kindFile:
		f, ok := parseFileRef(body)
		if !ok {
			return Message{}, fmt.Errorf("parse message: file: %w", ErrInvalidMessage)
		}
		m.File = f
	default:
		return Message{}, fmt.Errorf("parse message: kind %#x: %w", b[18], ErrInvalidMessage)
	}
	if err := m.check(); err != nil {
		return Message{}, fmt.Errorf("parse message: %w", err)
	}
	return m, nil
}

func parseFileRef(b []byte) (*FileRef, bool) {
	r := byteReader{b: b, ok: true}
	f := &FileRef{Key: r.bytes(FileKeySize), Digest: r.bytes(FileDigestSize), Size: int64(r.u64())}
	f.BlobID = string(r.bytes(int(r.u8())))
	f.Name = string(r.bytes(int(r.u16())))
	f.Type = string(r.bytes(int(r.u8())))
	return f, r.ok && len(r.b) == 0
}

// byteReader takes fields off the front of b; ok turns false, for good,
// at the first field longer than what is left.
type byteReader struct {
	b  []byte
	ok bool
}

func (r *byteReader) bytes(n int) []byte {
	if !r.ok || n > len(r.b) {
		r.ok = false
		return nil
	}
	v := append([]byte(nil), r.b[:n]...)
	r.b = r.b[n:]
	return v
}

func (r *byteReader) u8() uint8 {
	if v := r.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *byteReader) u16() uint16 {
	if v := r.bytes(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *byteReader) u64() uint64 {
	if v := r.bytes(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// check reports a message whose fields are out of bounds.
func (m Message) check() error {
	if m.Seq == 0 {
		return fmt.Errorf("sequence number 0: %w", ErrInvalidMessage)
	}
	if m.File == nil {
		if len(m.Text) == 0 || len(m.Text) > MaxMessageText || !utf8.ValidString(m.Text) {
			return fmt.Errorf("text of %d bytes, want 1 to %d of UTF-8: %w", len(m.Text), MaxMessageText, ErrInvalidMessage)
		}
		return nil
	}
	f := m.File
	switch {
	case m.Text != "":
		return fmt.Errorf("file message with text: %w", ErrInvalidMessage)
	case len(f.Key) != FileKeySize, len(f.Digest) != FileDigestSize, f.Size < 0:
		return fmt.Errorf("file key, digest or size: %w", ErrInvalidMessage)
	case !validBlobID(f.BlobID):
		return fmt.Errorf("blob id %q: %w", f.BlobID, ErrInvalidMessage)
	case len(f.Name) == 0 || len(f.Name) > MaxFileNameSize || !utf8.ValidString(f.Name):
		return fmt.Errorf("file name of %d bytes, want 1 to %d of UTF-8: %w", len(f.Name), MaxFileNameSize, ErrInvalidMessage)
	case len(f.Type) > MaxFileTypeSize || !printableASCII(f.Type):
		return fmt.Errorf("file type: %w", ErrInvalidMessage)
	}
	return nil
}

func validBlobID(id string) bool {
	if len(id) == 0 || len(id) > MaxBlobIDSize {
		return false
	}
	for i := range len(id) {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Receipt tells a sender that its message Seq reached the recipient's
// application (content type 0x04).
type Receipt struct {
	Seq uint64
}

// MarshalBinary encodes the receipt.
func (r Receipt) MarshalBinary() ([]byte, error) {
	if r.Seq == 0 {
		return nil, fmt.Errorf("marshal receipt: sequence number 0: %w", ErrInvalidMessage)
	}
	return binary.BigEndian.AppendUint64([]byte{byte(ContentReceipt)}, r.Seq), nil
}

// ParseReceipt decodes a receipt.
func ParseReceipt(b []byte) (Receipt, error) {
	if len(b) != receiptSize || ContentType(b[0]) != ContentReceipt {
		return Receipt{}, fmt.Errorf("parse receipt: %w", ErrInvalidMessage)
	}
	r := Receipt{Seq: binary.BigEndian.Uint64(b[1:])}
	if r.Seq == 0 {
		return Receipt{}, fmt.Errorf("parse receipt: sequence number 0: %w", ErrInvalidMessage)
	}
	return r, nil
}
