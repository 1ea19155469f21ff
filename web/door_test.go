package web_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/client"
	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
)

// TestBrowserDoor: the host decides who comes in. Bob's page knocks and
// waits, without a token, until Alice lets him in; her page then puts his
// safety number one click away. Carol is turned away and told so. When
// Alice lets anyone in the call answer, Bob's page lets Cleo in; with the
// door open, Dan comes in without asking.
func TestBrowserDoor(t *testing.T) {
	srv := startCallServer(t)
	wav := browsertest.WriteToneWAV(t, 10*time.Second)
	alice := openPage(t, "alice", wav)
	bob := openPage(t, "bob", wav)
	carol := openPage(t, "carol", wav)

	started := alice.startCall(srv, "Alice")
	if started.Door != "host" {
		t.Fatalf("the host's door is %q, want host", started.Door)
	}
	bob.acceptInvite(started.InviteLink, "Alice", "Bob")
	s := bob.waitState("bob waiting at the door", func(s pageState) bool { return s.Screen == "knock" && s.Knock != nil })
	if s.Knock.State != "pending" || s.SelfID != "" || s.Room != "" {
		t.Fatalf("bob waits as %+v; he must not be in the call", s)
	}
	if got := bob.text("#knock-title"); !strings.Contains(got, "Alice") {
		t.Errorf("bob's page says %q, want Alice named", got)
	}
	id := alice.waitKnock("Bob", "pending")
	// Waiting is waiting: nothing comes in until she answers.
	time.Sleep(time.Second)
	if s := bob.state(); s.Screen != "knock" || s.SelfID != "" {
		t.Fatalf("bob got in unanswered: %+v", s)
	}
	alice.do(chromedp.Click(chromedp.CSS(`li[data-knock="` + id + `"] .k-admit`)))
	as := alice.waitEncrypted(1)
	bs := bob.waitEncrypted(1)
	if s := alice.state(); s.knockOf("Bob", "admitted") != id {
		t.Fatalf("the host's door shows %+v, want Bob admitted", s.Knocks)
	}

	// One click to his safety number.
	button := `li[data-knock="` + id + `"] .k-safety`
	alice.waitState("the safety number button enabled", func(pageState) bool {
		var enabled bool
		return alice.eval(`!document.querySelector('`+button+`').disabled`, &enabled) == nil && enabled
	})
	alice.do(chromedp.Click(chromedp.CSS(button)))
	s = alice.waitState("bob's row in focus", func(s pageState) bool { return s.Focused == bs.SelfID })
	var shown bool
	if err := alice.eval(`!document.querySelector('[data-participant="`+bs.SelfID+`"] .p-safety').hidden && document.activeElement.classList.contains('p-verify')`, &shown); err != nil || !shown {
		t.Errorf("bob's safety number is not shown, ready to verify (%v)", err)
	}
	if a, b := peerSafetyNumber(t, s, bs.SelfID), peerSafetyNumber(t, bs, as.SelfID); a != b {
		t.Fatalf("safety numbers differ: %q and %q", a, b)
	}

	// Carol is turned away, and her page says so.
	carol.acceptInvite(started.InviteLink, "Alice", "Carol")
	id = alice.waitKnock("Carol", "pending")
	alice.do(chromedp.Click(chromedp.CSS(`li[data-knock="` + id + `"] .k-refuse`)))
	s = carol.waitState("carol turned away", func(s pageState) bool { return s.Screen == "message" })
	if title, text := carol.text("#message-title"), carol.text("#message-text"); !strings.Contains(title, "not let in") || !strings.Contains(text, "Alice") {
		t.Errorf("carol's page says %q / %q", title, text)
	}
	if s.SelfID != "" {
		t.Errorf("carol joined as %s", s.SelfID)
	}
	alice.waitKnock("Carol", "refused")
	if n := len(alice.state().peers()); n != 1 {
		t.Errorf("alice sees %d peers, want bob alone", n)
	}

	// Anyone in the call lets people in: bob's page answers Cleo.
	setDoor := func(door string) {
		t.Helper()
		alice.do(chromedp.SetValue(chromedp.CSS("#door-select"), door))
		alice.do(chromedp.Evaluate[chromedp.Void](`document.getElementById('door-select').dispatchEvent(new Event('change'))`))
		alice.waitState("the door "+door, func(s pageState) bool { return s.Door == door })
		bob.waitState("bob told the door is "+door, func(s pageState) bool { return s.Door == door })
	}
	setDoor("call")
	carol.navigate("about:blank")
	carol.acceptInvite(started.InviteLink, "Alice", "Cleo")
	id = bob.waitKnock("Cleo", "pending")
	alice.waitKnock("Cleo", "pending")
	bob.do(chromedp.Click(chromedp.CSS(`li[data-knock="` + id + `"] .k-admit`)))
	carol.waitEncrypted(2)
	if s := alice.state(); s.knockOf("Cleo", "admitted") != id {
		t.Errorf("alice's door shows %+v, want Cleo let in by bob", s.Knocks)
	}

	// The door open: Dan walks in without knocking.
	setDoor("open")
	if txt := alice.text("#invite-panel-text"); !strings.Contains(txt, "without asking") {
		t.Errorf("with the door open the invite panel says %q", txt)
	}
	invite := started.InviteLink[len(srv.URL+"/join#invite="):]
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	adm, err := client.Knock(ctx, srv.URL, invite, "Dan", &client.KnockOptions{Waiting: func(k api.Knock) { t.Errorf("Dan waits at an open door: %+v", k) }})
	if err != nil || adm.Token == "" || adm.By != "" {
		t.Fatalf("Dan at the open door: %+v, %v", adm, err)
	}
}

// TestBrowserKnockExpires: nobody answers; the guest's page says so once
// the (short) knock timeout passes, and offers to ask again. A guest who
// stops asking is gone from the host's door at once.
func TestBrowserKnockExpires(t *testing.T) {
	srv := startCallServerWith(t, &testserver.Options{KnockTimeout: 3 * time.Second})
	wav := browsertest.WriteToneWAV(t, 5*time.Second)
	alice := openPage(t, "alice", wav)
	bob := openPage(t, "bob", wav)
	started := alice.startCall(srv, "Alice")
	bob.acceptInvite(started.InviteLink, "Alice", "Bob")
	alice.waitKnock("Bob", "pending")
	s := bob.waitState("the unanswered message", func(s pageState) bool { return s.Screen == "message" })
	if title, text := bob.text("#message-title"), bob.text("#message-text"); !strings.Contains(title, "Nobody let you in") || !strings.Contains(text, "in time") {
		t.Errorf("bob's page says %q / %q", title, text)
	}
	if s.SelfID != "" {
		t.Errorf("bob joined as %s", s.SelfID)
	}
	var visible bool
	if err := bob.eval(`!document.getElementById('ask-again-button').hidden`, &visible); err != nil || !visible {
		t.Errorf("no way to ask again (%v)", err)
	}
	alice.waitKnock("Bob", "expired")
	// Asking again knocks anew; stopping tells the host at once.
	askAgain := func() {
		t.Helper()
		bob.do(chromedp.Click(chromedp.CSS("#ask-again-button")))
		bob.do(chromedp.WaitVisible(chromedp.CSS("#invite-name")))
		bob.do(chromedp.SetValue(chromedp.CSS("#invite-name"), "Bob"), chromedp.Click(chromedp.CSS("#accept-button")))
	}
	askAgain()
	alice.waitKnock("Bob", "pending")
	bob.do(chromedp.WaitVisible(chromedp.CSS("#cancel-knock-button")), chromedp.Click(chromedp.CSS("#cancel-knock-button")))
	alice.waitKnock("Bob", "withdrawn")
	bob.waitState("the stopped message", func(s pageState) bool { return s.Screen == "message" && s.Knock == nil })
	if title := bob.text("#message-title"); !strings.Contains(title, "stopped asking") {
		t.Errorf("after stopping, bob's page says %q", title)
	}
	askAgain()
	alice.letIn("Bob")
	bob.waitEncrypted(1)
}

// twoPageCall starts a call on Alice's page and lets Bob's page in; it
// returns once both are encrypted, with Alice's state when the call
// started and Bob's now.
func twoPageCall(t *testing.T) (srv *callServer, alice, bob *page, started, bs pageState) {
	t.Helper()
	srv = startCallServer(t)
	wav := browsertest.WriteToneWAV(t, 10*time.Second)
	alice = openPage(t, "alice", wav)
	bob = openPage(t, "bob", wav)
	started = alice.startCall(srv, "Alice")
	bob.joinAsGuest(alice, started.InviteLink, "Alice", "Bob")
	alice.waitEncrypted(1)
	return srv, alice, bob, started, bob.waitEncrypted(1)
}

// TestBrowserMuteSeen: muting on one page shows on the other, end to end
// (the relay only forwards an envelope), and a Go SDK caller sees it too
// and is seen when it mutes.
func TestBrowserMuteSeen(t *testing.T) {
	srv, alice, bob, started, bs := twoPageCall(t)
	invite := started.InviteLink[len(srv.URL+"/join#invite="):]
	gus := joinGo(t, srv, redeem(t, srv, alice, invite, "Gus").Token, false)
	alice.waitEncrypted(2)
	bob.waitEncrypted(2)

	muted := func(p *page, id string, want bool) {
		t.Helper()
		p.waitState(id+" shown muted="+map[bool]string{true: "yes", false: "no"}[want], func(s pageState) bool {
			for _, q := range s.Participants {
				if q.ID == id {
					return q.Muted == want
				}
			}
			return false
		})
	}
	bob.do(chromedp.Click(chromedp.CSS("#mute-button")))
	muted(alice, bs.SelfID, true)
	muted(bob, bs.SelfID, true)
	var badge bool
	if err := alice.eval(`!document.querySelector('[data-participant="`+bs.SelfID+`"] .p-muted').hidden`, &badge); err != nil || !badge {
		t.Errorf("alice's list shows no muted badge for bob (%v)", err)
	}
	gus.waitMuted(bs.SelfID, true)
	bob.do(chromedp.Click(chromedp.CSS("#mute-button")))
	muted(alice, bs.SelfID, false)
	gus.waitMuted(bs.SelfID, false)

	gus.call.SetMuted(true)
	muted(alice, gus.call.ID(), true)
	muted(bob, gus.call.ID(), true)
	if s := alice.state(); s.Muted {
		t.Errorf("alice's own mute button is pressed: %+v", s)
	}
}

// TestBrowserDeviceSwitch: Bob takes his call to another device (a Go SDK
// caller with his token and another identity key). His page is told the
// call moved and stays out; Alice's page shows that Bob switched devices,
// and asks her to compare the new device's safety number before its audio
// plays.
func TestBrowserDeviceSwitch(t *testing.T) {
	srv, alice, bob, _, bs := twoPageCall(t)

	var remembered string
	if err := bob.eval(`sessionStorage.getItem('sotto.call')`, &remembered); err != nil {
		t.Fatal(err)
	}
	var call struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(remembered), &call); err != nil || call.Token == "" {
		t.Fatalf("bob's page remembers %q (%v)", remembered, err)
	}
	phone := joinGo(t, srv, call.Token, false)

	s := bob.waitState("the moved message", func(s pageState) bool { return s.Screen == "message" })
	if s.ClosedReason != "moved_to_another_device" {
		t.Errorf("bob's page closed with %q", s.ClosedReason)
	}
	if title := bob.text("#message-title"); !strings.Contains(title, "moved to another device") {
		t.Errorf("bob's page says %q", title)
	}
	var rejoin bool
	if err := bob.eval(`!document.getElementById('rejoin-button').hidden`, &rejoin); err != nil || rejoin {
		t.Errorf("the moved page offers to rejoin (%v): it would take the call back", err)
	}

	phoneID := phone.call.ID()
	a := alice.waitState("bob's switch shown", func(s pageState) bool {
		for _, q := range s.Participants {
			if q.ID == phoneID {
				return strings.Contains(q.Note, "switched devices") && q.Warning != ""
			}
		}
		return false
	})
	for _, q := range a.Participants {
		if q.ID == bs.SelfID {
			t.Errorf("bob's old device is still listed: %+v", q)
		}
	}
	alice.do(chromedp.Click(chromedp.CSS(`[data-participant="` + phoneID + `"] .p-warning button`)))
	a = alice.waitEncrypted(1)
	for _, q := range a.Participants {
		if q.ID == phoneID && !strings.Contains(q.Note, "new device") {
			t.Errorf("after accepting, bob's row says %q", q.Note)
		}
	}
}
