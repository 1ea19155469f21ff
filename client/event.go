package client

import (
	"time"

	"github.com/sotto-voice/sotto/api"
)

// Event is something that happened in the call, delivered on Call.Events.
// It is one of ParticipantJoined, ParticipantLeft, Speaking, PeerEncrypted,
// PeerNotEncrypted, IdentityChanged, MessageDelivered, DeviceSwitched,
// MuteChanged, GuestKnock, DoorChanged, ServerError, Reconnecting,
// Reconnected or Closed; switch on the type:
//
//	switch e := ev.(type) {
//	case client.ParticipantJoined:
//		fmt.Println(e.Participant.Identity, "joined")
//	case client.ParticipantLeft:
//		fmt.Println(e.Participant.Identity, "left:", e.Reason)
//	}
type Event interface {
	event()
}

// ParticipantJoined reports another participant in the room. Every
// participant other than the caller produces one, including those already
// present when the call was joined.
type ParticipantJoined struct {
	Participant api.Participant
}

// ParticipantLeft reports a participant that is gone. Reason is one of the
// api.Reason* values, such as api.ReasonLeft when it left on purpose and
// api.ReasonDropped when its connection was lost for longer than the
// server's drop timeout, or ReasonUnknown. No frames from it follow the
// event, apart from any already queued on Call.Frames.
type ParticipantLeft struct {
	Participant api.Participant
	Reason      string
}

// ReasonUnknown is the Reason of a ParticipantLeft that the call noticed
// when its event stream came back after a loss: the participant was no
// longer in the room, and the event that said why went down with the old
// stream. It is also the reason of a participant the call knew before it
// rejoined that did not come back within a few seconds of the rejoin.
const ReasonUnknown = "unknown"

// Speaking reports that a participant, possibly the caller itself, started
// or stopped speaking. The server derives it from the audio level senders
// attach to their frames (see Call.WriteFrameLevel).
type Speaking struct {
	Participant api.Participant
	Speaking    bool
}

// PeerEncrypted reports that a participant's frame key is in place: its
// frames decrypt and are delivered from now on. It comes once per
// participant, shortly after its ParticipantJoined, and once more after
// each rejoin (Reconnected), when the new keys are in place.
type PeerEncrypted struct {
	Participant api.Participant
}

// PeerNotEncrypted reports a participant that declared no end-to-end
// encryption this SDK speaks (api.Participant.Encrypted is false): a
// client on another stack that does not implement docs/PROTOCOL.md. It
// cannot be heard: its frames are dropped (DropNotEncrypted), and it gets
// no key to the caller's frames. Show it as "not encrypted — cannot be
// heard". It comes once, right after the participant's ParticipantJoined.
type PeerNotEncrypted struct {
	Participant api.Participant
}

// IdentityChanged reports a participant whose identity key differs from
// the one remembered for its identity name (Options.TrustStore): another
// device, a reinstalled one, or someone impersonating it. Until the
// application calls Call.AcceptIdentity with New, the participant's frames
// are dropped (DropIdentityUnverified), it receives no key to the caller's
// frames and what it sends waits. Old and New are the two keys'
// fingerprints (Call.Fingerprint).
type IdentityChanged struct {
	Participant api.Participant
	Old, New    string
}

// ServerError reports a message the server refused, such as an envelope for
// a participant that has left. The call goes on.
type ServerError struct {
	Err *api.Error
}

// Reconnecting reports that the server lost the call (it crashed,
// restarted, was redeployed, or dropped the caller) and that the call is
// joining the room again, with new media and new end-to-end sessions.
// Frames written meanwhile go nowhere; the others' frames resume after
// Reconnected, as each of them is back. Cause is why the join was lost.
type Reconnecting struct {
	Cause error
}

// Reconnected reports that the call is in the room again, After the loss.
// The participants it knew are named as before, and are not reported as
// joining again when they come back; one that is not back a few seconds
// after the call is gets a ParticipantLeft with ReasonUnknown.
type Reconnected struct {
	After time.Duration
}

// Closed is the last event of a call, sent (when the channel has room)
// just before Events is closed. Err is the reason, as returned by Call.Err.
type Closed struct {
	Err error
}

func (ParticipantJoined) event() {}
func (ParticipantLeft) event()   {}
func (Speaking) event()          {}
func (PeerEncrypted) event()     {}
func (PeerNotEncrypted) event()  {}
func (IdentityChanged) event()   {}
func (ServerError) event()       {}
func (Reconnecting) event()      {}
func (Reconnected) event()       {}
func (Closed) event()            {}
