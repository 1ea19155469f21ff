package e2ee

import (
	"encoding/binary"
	"fmt"
)

// ContentType is the first byte of a ratchet plaintext (docs/PROTOCOL.md
// §5.4). Receivers ignore types they do not know.
type ContentType byte

// Content types of ratchet plaintexts.
const (
	ContentFrameKey    ContentType = 0x01
	ContentFrameKeyAck ContentType = 0x02
)

// ContentTypeOf returns the content type of a ratchet plaintext (0 if empty).
func ContentTypeOf(plaintext []byte) ContentType {
	if len(plaintext) == 0 {
		return 0
	}
	return ContentType(plaintext[0])
}

// KID layout (docs/PROTOCOL.md §6.4): sender index above an 8-bit
// generation and an 8-bit ratchet step (RFC 9605 §5.1 with R = 8).
const (
	ratchetBits    = 8
	generationBits = 8
	// MaxRatchetStep is the last ratchet step of a chain; a sender rekeys
	// instead of going past it.
	MaxRatchetStep = 1<<ratchetBits - 1
)

// KID returns the SFrame key id of a sender's key.
func KID(senderIndex, generation uint32, step uint8) uint64 {
	return uint64(senderIndex)<<(ratchetBits+generationBits) |
		uint64(generation&(1<<generationBits-1))<<ratchetBits | uint64(step)
}

const (
	frameKeyHeaderSize = 12 // type, suite, sender index, generation, step
	frameKeyAckSize    = 10
)

// FrameKey is one base key of a sender's chain with the coordinates that
// name it. It travels to peers inside ratchet messages (MarshalBinary) and
// is installed in a FrameReceiver.
type FrameKey struct {
	suite       CipherSuite
	senderIndex uint32
	generation  uint32
	step        uint8
	baseKey     []byte
}

// Suite returns the SFrame cipher suite the key is for.
func (k FrameKey) Suite() CipherSuite { return k.suite }

// SenderIndex returns the sender index the sender announced.
func (k FrameKey) SenderIndex() uint32 { return k.senderIndex }

// Generation returns the chain's generation.
func (k FrameKey) Generation() uint32 { return k.generation }

// Step returns the ratchet step within the generation.
func (k FrameKey) Step() uint8 { return k.step }

// KID returns the SFrame key id of frames sealed with this key.
func (k FrameKey) KID() uint64 { return KID(k.senderIndex, k.generation, k.step) }

// Ack returns the acknowledgement a receiver sends back after installing k.
func (k FrameKey) Ack() FrameKeyAck {
	return FrameKeyAck{SenderIndex: k.senderIndex, Generation: k.generation, Step: k.step}
}

// MarshalBinary encodes the frame-key message (content type 0x01).
func (k FrameKey) MarshalBinary() ([]byte, error) {
	if !k.suite.Valid() || len(k.baseKey) != k.suite.BaseKeySize() {
		return nil, fmt.Errorf("marshal frame key: %w", ErrInvalidMessage)
	}
	b := make([]byte, 0, frameKeyHeaderSize+len(k.baseKey))
	b = append(b, byte(ContentFrameKey))
	b = binary.BigEndian.AppendUint16(b, uint16(k.suite))
	b = binary.BigEndian.AppendUint32(b, k.senderIndex)
	b = binary.BigEndian.AppendUint32(b, k.generation)
	b = append(b, k.step)
	return append(b, k.baseKey...), nil
}

// ParseFrameKey decodes a frame-key message.
func ParseFrameKey(b []byte) (FrameKey, error) {
	if len(b) < frameKeyHeaderSize || ContentType(b[0]) != ContentFrameKey {
		return FrameKey{}, fmt.Errorf("parse frame key: %w", ErrInvalidMessage)
	}
	suite := CipherSuite(binary.BigEndian.Uint16(b[1:3]))
	if !suite.Valid() {
		return FrameKey{}, fmt.Errorf("parse frame key: %w", ErrUnknownSuite)
	}
	if len(b) != frameKeyHeaderSize+suite.BaseKeySize() {
		return FrameKey{}, fmt.Errorf("parse frame key: %w", ErrInvalidMessage)
	}
	return FrameKey{
		suite:       suite,
		senderIndex: binary.BigEndian.Uint32(b[3:7]),
		generation:  binary.BigEndian.Uint32(b[7:11]),
		step:        b[11],
		baseKey:     append([]byte(nil), b[frameKeyHeaderSize:]...),
	}, nil
}

// Destroy zeroes the key's base key. Call it once the key is installed or
// sent and no longer needed.
func (k FrameKey) Destroy() { clear(k.baseKey) }

// FrameKeyAck tells a sender that a receiver installed one of its keys.
type FrameKeyAck struct {
	SenderIndex uint32
	Generation  uint32
	Step        uint8
}

// MarshalBinary encodes the ack message (content type 0x02).
func (a FrameKeyAck) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, frameKeyAckSize)
	b = append(b, byte(ContentFrameKeyAck))
	b = binary.BigEndian.AppendUint32(b, a.SenderIndex)
	b = binary.BigEndian.AppendUint32(b, a.Generation)
	return append(b, a.Step), nil
}

// ParseFrameKeyAck decodes an ack message.
func ParseFrameKeyAck(b []byte) (FrameKeyAck, error) {
	if len(b) != frameKeyAckSize || ContentType(b[0]) != ContentFrameKeyAck {
		return FrameKeyAck{}, fmt.Errorf("parse frame key ack: %w", ErrInvalidMessage)
	}
	return FrameKeyAck{
		SenderIndex: binary.BigEndian.Uint32(b[1:5]),
		Generation:  binary.BigEndian.Uint32(b[5:9]),
		Step:        b[9],
	}, nil
}
