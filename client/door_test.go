package client

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/pionlog"
	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
)

// startHost creates a private call on srv as name and joins it.
func startHost(ctx context.Context, t *testing.T, srv *testserver.Server, name string) (*peer, *api.CreateCallResponse) {
	t.Helper()
	cr, err := CreateCall(ctx, srv.URL, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	call, err := Join(ctx, srv.URL, cr.Token, &Options{IPFilter: loopback})
	if err != nil {
		t.Fatalf("%s: join: %v", name, err)
	}
	return track(t, call), cr
}

// track reads call's channels into a peer named by its identity, until
// the test ends and leaves the call.
func track(t *testing.T, call *Call) *peer {
	p := &peer{t: t, name: call.Identity(), call: call, frames: make(map[string][]Frame), readDone: make(chan struct{})}
	go p.read()
	t.Cleanup(func() {
		p.stop()
		call.Leave()
		<-p.readDone
	})
	return p
}

// knocking knocks with invite as name in the background; the outcome
// comes on the returned channel, the knock itself once it waits.
func knocking(ctx context.Context, srv *testserver.Server, invite, name string) (<-chan api.Knock, <-chan knockResult) {
	waiting := make(chan api.Knock, 1)
	out := make(chan knockResult, 1)
	go func() {
		adm, err := Knock(ctx, srv.URL, invite, name, &KnockOptions{Waiting: func(k api.Knock) { waiting <- k }})
		out <- knockResult{adm, err}
	}()
	return waiting, out
}

type knockResult struct {
	adm *Admission
	err error
}

func isKnock(id, state string) func(Event) bool {
	return func(e Event) bool {
		k, ok := e.(GuestKnock)
		return ok && k.Knock.ID == id && k.Knock.State == state
	}
}

// TestKnockAtTheDoor: a guest knocks with the Go SDK and waits; the host's
// call reports the knock with the guest's name and admits it, and only
// then does the guest get a token, with which it joins. Another guest is
// refused, a third waits in vain until the timeout, a fourth gives up.
func TestKnockAtTheDoor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, &testserver.Options{KnockTimeout: 2 * time.Second})
	host, cr := startHost(ctx, t, srv, "Host")
	if d := host.call.Door(); d != api.DoorHost {
		t.Fatalf("door %q, want the host's", d)
	}

	waiting, result := knocking(ctx, srv, cr.Invite, "Guest")
	k := <-waiting
	if k.State != api.KnockPending || k.Name != "Guest" || k.Token != "" {
		t.Fatalf("guest waits with %+v", k)
	}
	e := waitEvent(ctx, t, host, "the guest knocking", isKnock(k.ID, api.KnockPending)).(GuestKnock)
	if e.Knock.Name != "Guest" || e.Knock.Identity != k.Identity {
		t.Fatalf("host sees %+v, want the guest's %+v", e.Knock, k)
	}
	if l := host.call.Knocks(); len(l) != 1 || l[0].ID != k.ID {
		t.Fatalf("host's Knocks() = %+v", l)
	}
	select {
	case r := <-result:
		t.Fatalf("the guest got in before anyone answered: %+v, %v", r.adm, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := host.call.Admit(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	r := <-result
	if r.err != nil || r.adm.Token == "" || r.adm.Identity != k.Identity || r.adm.By != cr.Identity || r.adm.Room != cr.Room {
		t.Fatalf("admission %+v, %v", r.adm, r.err)
	}
	if err := host.call.Refuse(ctx, k.ID); !isAPIError(err, api.CodeKnockAnswered) {
		t.Fatalf("refusing an admitted guest: %v, want knock_answered", err)
	}
	waitEvent(ctx, t, host, "the admission", isKnock(k.ID, api.KnockAdmitted))
	if l := host.call.Knocks(); len(l) != 0 {
		t.Fatalf("host's Knocks() after the answer: %+v", l)
	}
	guestCall, err := Join(ctx, srv.URL, r.adm.Token, &Options{IPFilter: loopback})
	if err != nil {
		t.Fatal(err)
	}
	guest := track(t, guestCall)
	talkAndCheck(ctx, t, []*peer{host, guest}, 20)
	// The guest may not answer the door.
	waiting, result = knocking(ctx, srv, cr.Invite, "Refused")
	k = <-waiting
	waitEvent(ctx, t, host, "the second knock", isKnock(k.ID, api.KnockPending))
	if err := guest.call.Admit(ctx, k.ID); !isAPIError(err, api.CodeForbidden) {
		t.Fatalf("the guest admits: %v, want forbidden", err)
	}
	if _, ok := guest.findEvent(func(e Event) bool { _, ok := e.(GuestKnock); return ok }); ok {
		t.Fatal("a guest who may not answer was told of a knock")
	}
	if err := host.call.Refuse(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	r = <-result
	var ke *KnockError
	if !errors.Is(r.err, ErrKnockRefused) || !errors.As(r.err, &ke) || ke.Knock.By != cr.Identity || r.adm != nil {
		t.Fatalf("refused guest: %+v, %v", r.adm, r.err)
	}

	// Nobody answers: the knock expires.
	waiting, result = knocking(ctx, srv, cr.Invite, "Late")
	k = <-waiting
	if r := <-result; !errors.Is(r.err, ErrKnockExpired) {
		t.Fatalf("unanswered guest: %+v, %v", r.adm, r.err)
	}
	waitEvent(ctx, t, host, "the knock expiring", isKnock(k.ID, api.KnockExpired))

	// The guest gives up: the host sees the knock withdrawn.
	gctx, gcancel := context.WithCancel(ctx)
	waiting, result = knocking(gctx, srv, cr.Invite, "Shy")
	k = <-waiting
	gcancel()
	if r := <-result; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("guest who gave up: %+v, %v", r.adm, r.err)
	}
	waitEvent(ctx, t, host, "the knock withdrawn", isKnock(k.ID, api.KnockWithdrawn))

	// The host opens the door: the next guest comes in without knocking.
	if err := guest.call.SetDoor(ctx, api.DoorOpen); !isAPIError(err, api.CodeForbidden) {
		t.Fatalf("a guest sets the door: %v, want forbidden", err)
	}
	if err := host.call.SetDoor(ctx, api.DoorOpen); err != nil {
		t.Fatal(err)
	}
	waitEvent(ctx, t, guest, "the door opening", func(e Event) bool {
		d, ok := e.(DoorChanged)
		return ok && d.Door == api.DoorOpen && d.By == cr.Identity
	})
	adm, err := Knock(ctx, srv.URL, cr.Invite, "Walkin", &KnockOptions{Waiting: func(k api.Knock) { t.Errorf("walk-in waits at an open door: %+v", k) }})
	if err != nil || adm.Token == "" || adm.By != "" {
		t.Fatalf("walk-in: %+v, %v", adm, err)
	}
}

// TestDeviceSwitch: alice joins again from another device (another
// identity key). Her first device is told it moved and stops for good;
// bob sees her leave and come back as a device switch, with a new safety
// number, and the keys rotate: bob's frames after the switch are under a
// fresh chain the old device never had.
func TestDeviceSwitch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	const room = "devices"
	tp := joinTap(ctx, t, srv, room)
	oldKeys, newKeys := &keyRecorder{}, &keyRecorder{}
	alice := joinWith(ctx, t, srv, room, "alice", &Options{keyLog: oldKeys.record})
	bob := joinPeer(ctx, t, srv, room, "bob")
	talkAndCheck(ctx, t, []*peer{alice, bob}, 20)
	oldNumber, err := bob.call.SafetyNumber(alice.call.ID())
	if err != nil {
		t.Fatal(err)
	}
	rekeys := bob.call.Stats().Rekeys
	oldID := alice.call.ID()

	phone := joinWith(ctx, t, srv, room, "alice", &Options{Identity: newIdentity(t), keyLog: newKeys.record})
	newID := phone.call.ID()
	select {
	case <-alice.call.Done():
	case <-ctx.Done():
		t.Fatal("the first device's call did not end")
	}
	if err := alice.call.Err(); !errors.Is(err, ErrMovedToAnotherDevice) {
		t.Fatalf("first device: Err() = %v, want ErrMovedToAnotherDevice", err)
	}

	sw := waitEvent(ctx, t, bob, "alice switching devices", func(e Event) bool { _, ok := e.(DeviceSwitched); return ok }).(DeviceSwitched)
	if sw.Participant.ID != newID || sw.Previous.ID != oldID || sw.Participant.Identity != "alice" {
		t.Fatalf("bob sees %+v, want alice from %s to %s", sw, oldID, newID)
	}
	if l := waitEvent(ctx, t, bob, "the old device leaving", isLeft(oldID)).(ParticipantLeft); l.Reason != api.ReasonMovedToAnotherDevice {
		t.Fatalf("old device left with %q", l.Reason)
	}
	// Another key under the same name: bob decides, as for any change.
	ic := waitEvent(ctx, t, bob, "the new device's key", isIdentityChanged(newID)).(IdentityChanged)
	if err := bob.call.AcceptIdentity(newID, ic.New); err != nil {
		t.Fatal(err)
	}
	waitEvent(ctx, t, bob, "the new device encrypted", isEncrypted(newID))
	bob.mu.Lock()
	delete(bob.frames, "alice") // the old device's, under the same name
	bob.mu.Unlock()
	newNumber, err := bob.call.SafetyNumber(newID)
	if err != nil {
		t.Fatal(err)
	}
	if theirs, err := phone.call.SafetyNumber(bob.call.ID()); err != nil || theirs != newNumber || newNumber == oldNumber {
		t.Fatalf("safety numbers: bob sees %q (was %q), the new device %q (%v)", newNumber, oldNumber, theirs, err)
	}
	talkAndCheck(ctx, t, []*peer{bob, phone}, 50)

	// Rotated as for a leave and a join: a fresh chain for the leave, one
	// step for the join. The old device cannot open bob's frames since.
	if got := bob.call.Stats().Rekeys; got != rekeys+2 {
		t.Errorf("bob rekeyed %d times for the switch, want 2", got-rekeys)
	}
	oldGen, _ := oldKeys.newest(bob.call.ID())
	newGen, ok := newKeys.newest(bob.call.ID())
	if !ok || newGen <= oldGen {
		t.Fatalf("bob's chain: generation %d for the new device, %d for the old", newGen, oldGen)
	}
	checkRekeyedOut(t, tp, "alice's old device", oldKeys, bob, time.Now())
	if n := countFrom(alice, bob.call.ID()); n == 0 {
		t.Fatal("the old device never heard bob: the check above is vacuous")
	}
}

// crashable is media a test can cut as a crashed process loses it: each
// join of the call gets a UDP socket the test owns, whose closing sends no
// DTLS close.
type crashable struct {
	t    *testing.T
	mu   sync.Mutex
	sock net.PacketConn // the current join's
}

func (c *crashable) settings(se *webrtc.SettingEngine) {
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		c.t.Error(err)
		return
	}
	c.t.Cleanup(func() { sock.Close() })
	c.mu.Lock()
	c.sock = sock
	c.mu.Unlock()
	se.SetICEUDPMux(webrtc.NewICEUDPMux(pionlog.Factory(slog.New(slog.DiscardHandler)).NewLogger("mux"), sock))
}

// cut silences the current join's media and drops its event stream
// without a goodbye; the server holds the participant until it times out.
func (c *crashable) cut(call *Call) {
	c.mu.Lock()
	c.sock.Close()
	c.mu.Unlock()
	call.tconn().closeAbruptly()
}

// TestRejoinIsNotADeviceSwitch: a muted caller whose connection breaks
// while the server still holds it rejoins naming its earlier participant
// (JoinRequest.Replaces): the others see that one leave as replaced, not
// as a device switch, and learn with the new keys that the caller is still
// muted; the caller's own rejoin goes on.
func TestRejoinIsNotADeviceSwitch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	const room = "not-a-switch"
	media := &crashable{t: t}
	alice := joinWith(ctx, t, srv, room, "alice", &Options{settings: media.settings})
	bob := joinPeer(ctx, t, srv, room, "bob")
	talkAndCheck(ctx, t, []*peer{alice, bob}, 10)
	alice.call.SetMuted(true)
	waitEvent(ctx, t, bob, "alice muted", isMute(alice.call.ID(), true))
	oldID := alice.call.tconn().self.ID
	bob.forget()
	alice.stop()

	media.cut(alice.call)
	waitEvent(ctx, t, alice, "her rejoin", isReconnected)
	if l := waitEvent(ctx, t, bob, "alice's old participant leaving", isLeft(oldID)).(ParticipantLeft); l.Reason != api.ReasonReplaced {
		t.Fatalf("alice's old participant left with %q, want %q: the server held it, and the rejoin must name it", l.Reason, api.ReasonReplaced)
	}
	newID := alice.call.tconn().self.ID
	waitEvent(ctx, t, bob, "alice muted, with her new keys", isMute(newID, true))
	if m, err := bob.call.Muted(newID); err != nil || !m {
		t.Fatalf("bob: Muted(alice) = %v, %v after her rejoin", m, err)
	}
	if _, ok := bob.findEvent(func(e Event) bool { _, ok := e.(DeviceSwitched); return ok }); ok {
		t.Error("bob took alice's rejoin for a device switch")
	}
	if err := alice.call.Err(); err != nil {
		t.Fatalf("alice's call ended: %v", err)
	}
}

func isMute(id string, muted bool) func(Event) bool {
	return func(e Event) bool {
		m, ok := e.(MuteChanged)
		return ok && m.Participant.ID == id && m.Muted == muted
	}
}

// TestMuteSeen: alice mutes; bob learns it end to end and no frame of hers
// reaches him while she is muted; carol, who joins meanwhile, learns it
// with alice's keys; unmuting is seen too and her audio comes back.
func TestMuteSeen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	const room = "mute"
	alice := joinPeer(ctx, t, srv, room, "alice")
	bob := joinPeer(ctx, t, srv, room, "bob")
	talkAndCheck(ctx, t, []*peer{alice, bob}, 20)
	waitEvent(ctx, t, bob, "alice unmuted at first", isMute(alice.call.ID(), false))

	alice.call.SetMuted(true)
	waitEvent(ctx, t, bob, "alice muted", isMute(alice.call.ID(), true))
	if m, err := bob.call.Muted(alice.call.ID()); err != nil || !m {
		t.Fatalf("bob: Muted(alice) = %v, %v", m, err)
	}
	if m, err := alice.call.Muted(alice.call.ID()); err != nil || !m {
		t.Fatalf("alice: Muted(herself) = %v, %v", m, err)
	}
	sent, heard := alice.call.Stats().FramesSent, len(bob.received("alice"))
	alice.talk()
	time.Sleep(500 * time.Millisecond)
	if s := alice.call.Stats().FramesSent; s != sent {
		t.Errorf("muted alice sent %d frames", s-sent)
	}
	if n := len(bob.received("alice")); n != heard {
		t.Errorf("bob received %d frames of muted alice", n-heard)
	}

	carol := joinPeer(ctx, t, srv, room, "carol")
	waitEvent(ctx, t, carol, "alice muted, on joining", isMute(alice.call.ID(), true))
	if n := len(carol.received("alice")); n != 0 {
		t.Errorf("carol received %d frames of muted alice", n)
	}
	if _, err := carol.call.Muted("p_nobody"); !errors.Is(err, ErrUnknownParticipant) {
		t.Errorf("Muted of a stranger: %v", err)
	}

	before := map[*peer]int{bob: len(bob.received("alice")), carol: len(carol.received("alice"))}
	alice.call.SetMuted(false)
	for _, p := range []*peer{bob, carol} {
		waitEvent(ctx, t, p, "alice unmuted", isMute(alice.call.ID(), false))
		wait.Until(ctx, t, p.name+" hears alice again", func() bool { return len(p.received("alice")) > before[p] })
	}
}
