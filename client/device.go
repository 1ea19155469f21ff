package client

import (
	"errors"
	"sync"

	"github.com/sotto-voice/sotto/api"
)

// One device at a time: an identity that joins a call again from another
// device takes the call there. The server closes the earlier participant
// with api.ReasonMovedToAnotherDevice (a ClosedError, which
// ErrMovedToAnotherDevice matches) and tells the others it left for that
// reason just before the new one joins; a Call reports the pair to them as
// DeviceSwitched.

// ErrMovedToAnotherDevice matches Call.Err of a call whose identity joined
// from another device, where the call goes on. It is final: rejoining from
// here would take the call back from the other device, which would do the
// same in turn.
var ErrMovedToAnotherDevice = errors.New("client: the call moved to another device")

// Is makes errors.Is(err, ErrMovedToAnotherDevice) true for a call closed
// because it moved to another device.
func (e *ClosedError) Is(target error) bool {
	return target == ErrMovedToAnotherDevice && e.Reason == api.ReasonMovedToAnotherDevice
}

// DeviceSwitched reports that a participant moved the call to another
// device: Previous, its participant on the old device, left (a
// ParticipantLeft with api.ReasonMovedToAnotherDevice came before) and
// Participant joined in its place (after its ParticipantJoined). Both
// carry the same identity name; the new device has its own participant ID
// and, unless the application moved its identity key along, its own key
// and safety number: an IdentityChanged follows then, as for any changed
// key, and Call.SafetyNumber(Participant.ID) gives the new number to
// compare once PeerEncrypted comes. The keys change as for a leave and a
// join: the old device cannot open what is sent from now on.
type DeviceSwitched struct {
	Participant api.Participant
	Previous    api.Participant
}

func (DeviceSwitched) event() {}

// deviceSwitches pairs a participant that moved to another device with
// the participant of the same identity that joins next.
type deviceSwitches struct {
	mu    sync.Mutex
	moved map[string]api.Participant // by identity
}

func (d *deviceSwitches) left(p api.Participant, reason string) {
	if reason != api.ReasonMovedToAnotherDevice {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.moved == nil {
		d.moved = make(map[string]api.Participant)
	}
	d.moved[p.Identity] = p
}

// joined returns the participant p took over from, if it moved devices.
func (d *deviceSwitches) joined(p api.Participant) (api.Participant, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	prev, ok := d.moved[p.Identity]
	delete(d.moved, p.Identity)
	return prev, ok
}
