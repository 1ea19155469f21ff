package e2ee

import "fmt"

// ContentMuteState carries whether a participant's microphone is muted
// (docs/PROTOCOL.md §6.6). It travels in the Double Ratchet sessions like
// frame keys, so the relay never learns who muted.
const ContentMuteState ContentType = 0x10

const muteStateSize = 2

// MarshalMuteState encodes a mute-state message: the content type, then
// 0x01 for muted or 0x00 for not.
func MarshalMuteState(muted bool) []byte {
	b := []byte{byte(ContentMuteState), 0}
	if muted {
		b[1] = 1
	}
	return b
}

// ParseMuteState decodes a mute-state message; anything but the two
// encodings is refused.
func ParseMuteState(b []byte) (muted bool, err error) {
	if len(b) != muteStateSize || ContentType(b[0]) != ContentMuteState || b[1] > 1 {
		return false, fmt.Errorf("parse mute state: %w", ErrInvalidMessage)
	}
	return b[1] == 1, nil
}
