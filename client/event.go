package client

import "github.com/sotto-voice/sotto/api"

// Event is something that happened in the call, delivered on Call.Events.
// It is one of ParticipantJoined, ParticipantLeft, Speaking, ServerError or
// Closed; switch on the type:
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
// api.Reason* values: api.ReasonLeft when it left on purpose,
// api.ReasonDropped when its connection was lost for longer than the
// server's drop timeout. No frames from it follow the event, apart from any
// already queued on Call.Frames.
type ParticipantLeft struct {
	Participant api.Participant
	Reason      string
}

// Speaking reports that a participant, possibly the caller itself, started
// or stopped speaking. The server derives it from the audio level senders
// attach to their frames (see Call.WriteFrameLevel).
type Speaking struct {
	Participant api.Participant
	Speaking    bool
}

// ServerError reports a message the server refused, such as an envelope for
// a participant that has left. The call goes on.
type ServerError struct {
	Err *api.Error
}

// Closed is the last event of a call, sent (when the channel has room)
// just before Events is closed. Err is the reason, as returned by Call.Err.
type Closed struct {
	Err error
}

func (ParticipantJoined) event() {}
func (ParticipantLeft) event()   {}
func (Speaking) event()          {}
func (ServerError) event()       {}
func (Closed) event()            {}
