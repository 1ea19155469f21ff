package client

import (
	"context"
	"errors"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/e2ee"
)

// Mute you can see: whether a participant is muted travels end to end, as
// a mute-state message (docs/PROTOCOL.md §6.6) in the same Double Ratchet
// sessions as the frame keys, never as a server event. Each participant
// sends its state to every peer with its keys, and to all of them when it
// changes.

// MuteChanged reports that a participant muted or unmuted. It comes when
// the state of a participant is first known (once its session is up) and
// on every change.
type MuteChanged struct {
	Participant api.Participant
	Muted       bool
}

func (MuteChanged) event() {}

// SetMuted mutes or unmutes the caller: the others are told, end to end,
// and while muted WriteFrame and WriteFrameLevel send nothing, so that
// what the others see is what they hear. The state outlives a rejoin:
// the others are told it again with the caller's keys.
func (c *Call) SetMuted(muted bool) {
	if c.muted.Swap(muted) == muted {
		return
	}
	s := c.session()
	if s == nil {
		return // the next join sends it with the keys
	}
	s.e2e.queue(func(ctx context.Context) {
		for _, r := range s.e2e.reachable() {
			s.e2e.sendMuteState(ctx, r)
		}
	})
}

// Muted reports whether the caller is muted (its own ID) or whether a
// participant said it is. It fails with ErrUnknownParticipant, or
// ErrNoSession until the participant's session is set up, and with
// ErrReconnecting while the call rejoins (after which the others say it
// again).
func (c *Call) Muted(participantID string) (bool, error) {
	if participantID == c.ID() {
		return c.muted.Load(), nil
	}
	s := c.session()
	if s == nil {
		return false, c.reconnecting()
	}
	r := s.e2e.remote(participantID)
	if r == nil {
		return false, ErrUnknownParticipant
	}
	if !r.muteKnown.Load() {
		// Nothing said yet: a session not set up is ErrNoSession.
		if _, err := s.e2e.peerKey(participantID); err != nil {
			return false, err
		}
	}
	return r.muted.Load(), nil
}

// sendMuteState tells r whether the caller is muted now. Worker only.
func (e *e2eeState) sendMuteState(ctx context.Context, r *remote) {
	e.send(ctx, r, e2ee.MarshalMuteState(e.sess.call.muted.Load()))
}

// muteStateReceived records a participant's mute state. Worker only.
func (e *e2eeState) muteStateReceived(r *remote, pt []byte) {
	muted, err := e2ee.ParseMuteState(pt)
	if err != nil {
		e.log.Debug("drop mute state", "participant", r.p.ID, "err", errors.Unwrap(err))
		return
	}
	known := r.muteKnown.Swap(true)
	if r.muted.Swap(muted) != muted || !known {
		e.sess.event(MuteChanged{Participant: r.p, Muted: muted})
	}
}
