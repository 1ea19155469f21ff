package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/e2ee"
)

// This file is the frame side of a call's end-to-end layer: SFrame on
// every frame, sealed and opened on the goroutines that write and read
// them, with the keys keys.go exchanges.

// Reasons a received frame is dropped, the keys of Stats.Dropped.
const (
	// DropMalformed: the SFrame header does not parse or the frame is
	// shorter than its authentication tag.
	DropMalformed = "malformed"
	// DropUnknownKID: no key for the frame's key id, and none is expected
	// from its publisher (a forged or foreign key id).
	DropUnknownKID = "unknown_kid"
	// DropAuthFailed: the frame does not authenticate under the key its key
	// id names (tampered, or sealed with another key).
	DropAuthFailed = "auth_failed"
	// DropReplayed: the frame's counter was seen before under its key, or
	// is older than the replay window.
	DropReplayed = "replayed"
	// DropExpiredKey: the frame is sealed with a key the publisher replaced
	// more than a grace period ago.
	DropExpiredKey = "expired_key"
	// DropWrongSender: the frame authenticates, but under another
	// participant's key than its publisher's (a participant re-sending
	// someone else's frames).
	DropWrongSender = "wrong_sender"
	// DropAwaitingKey: the publisher's key has not arrived yet: it joined
	// a moment ago, or its new chain after a rekey is still on its way.
	// This is the normal start of every stream, not a decryption failure.
	DropAwaitingKey = "awaiting_key"
	// DropBeforeKey: the frame was sealed under an earlier ratchet step of
	// the chain whose later step this caller was given: audio sent before
	// it joined, which the protocol keeps from newcomers on purpose. Such
	// frames reach a newcomer while the publisher's switch is in flight.
	DropBeforeKey = "before_key"
	// DropIdentityUnverified: the publisher presented an identity key that
	// differs from the one known for its name, and the application has
	// not accepted it (Call.AcceptIdentity).
	DropIdentityUnverified = "identity_unverified"
	// DropNotEncrypted: the publisher declared no end-to-end encryption
	// this SDK speaks (its api.Participant is not Encrypted, and a
	// PeerNotEncrypted event said so): it cannot be heard.
	DropNotEncrypted = "not_encrypted"
)

// dropReasons lists the Drop* reasons in the order of e2eeState.dropped,
// each with the error of e2ee.FrameReceiver.Open it counts.
var dropReasons = [...]struct {
	name string
	err  error
}{
	{DropMalformed, e2ee.ErrMalformed},
	{DropUnknownKID, e2ee.ErrUnknownKID},
	{DropAuthFailed, e2ee.ErrAuthFailed},
	{DropReplayed, e2ee.ErrReplayed},
	{DropExpiredKey, e2ee.ErrKeyExpired},
	{DropWrongSender, e2ee.ErrWrongSender},
	{DropAwaitingKey, e2ee.ErrAwaitingKey},
	{DropBeforeKey, e2ee.ErrBeforeKey},
	{DropIdentityUnverified, nil}, // the application's decision, not the receiver's
	{DropNotEncrypted, nil},       // the publisher's declaration, not the receiver's
}

// The indexes of the reasons no error of Open gives.
const (
	dropIdentityUnverified = len(dropReasons) - 2
	dropNotEncrypted       = len(dropReasons) - 1
)

// dropIndex returns the index in dropReasons of the reason Open gave.
func dropIndex(err error) int {
	for i, d := range dropReasons {
		if d.err != nil && errors.Is(err, d.err) {
			return i
		}
	}
	return 0 // Open returns only the errors listed; count anything else as malformed
}

// open decrypts one received payload from its publisher, or drops and
// counts it.
func (e *e2eeState) open(from api.Participant, payload []byte, now time.Time) ([]byte, bool) {
	if len(payload) == 0 {
		return nil, true // an empty (DTX) frame carries no audio to protect
	}
	if from.Identity != "" && !from.Encrypted() {
		e.dropped[dropNotEncrypted].Add(1)
		return nil, false
	}
	r := e.remote(from.ID)
	if r != nil && r.blocked.Load() {
		e.dropped[dropIdentityUnverified].Add(1)
		return nil, false
	}
	out, err := e.receiver.Open(make([]byte, 0, len(payload)), payload, from.ID, now)
	if err != nil {
		e.dropped[dropIndex(err)].Add(1)
		return nil, false
	}
	e.decrypted.Add(1)
	return out, true
}

// seal encrypts one frame into dst.
func (e *e2eeState) seal(dst, frame []byte, now time.Time) ([]byte, error) {
	out, err := e.sender.Seal(dst, frame, now)
	if errors.Is(err, e2ee.ErrClosed) {
		return dst, ErrClosed
	}
	if err != nil {
		return dst, fmt.Errorf("client: encrypt frame: %w", err)
	}
	return out, nil
}

func (e *e2eeState) droppedByReason() map[string]uint64 {
	m := make(map[string]uint64, len(dropReasons))
	for i, d := range dropReasons {
		m[d.name] = e.dropped[i].Load()
	}
	return m
}
