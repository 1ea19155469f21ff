package web_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/token"
)

// TestBrowserInviteFlow: only a valid invite admits a browser; declining
// leaves the call as it was; the creator ending the call disconnects
// everyone, and the link is dead afterwards.
func TestBrowserInviteFlow(t *testing.T) {
	srv := startCallServer(t)
	wav := browsertest.WriteToneWAV(t, 10*time.Second)
	alice := openPage(t, "alice", wav)
	bob := openPage(t, "bob", wav)

	started := alice.startCall(srv, "Alice")
	link := started.InviteLink
	invite := link[strings.Index(link, "#invite=")+len("#invite="):]

	// No invite: the page offers to start a call of one's own, nothing else.
	bob.navigate(srv.URL + "/join")
	if s := bob.waitState("the start screen", func(s pageState) bool { return s.Screen != "" }); s.Screen != "start" {
		t.Fatalf("/join without an invite shows %q, want the start screen", s.Screen)
	}

	expired, err := token.MintInvite(srv.Secret, token.InviteClaims{Room: started.Room, Inviter: started.Identity, Expiry: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	forged := []byte(invite)
	forged[len(forged)-2] ^= 'A' ^ 'B'
	for _, c := range []struct {
		name, invite, want string
	}{
		{"garbage", "not-an-invite", "not valid"},
		{"forged", string(forged), "not valid"},
		{"expired", expired, "expired"},
	} {
		// A fresh document each time: only the fragment differs.
		bob.navigate("about:blank")
		bob.navigate(srv.URL + "/join#invite=" + c.invite)
		s := bob.waitState(c.name+" invite refused", func(s pageState) bool { return s.Screen == "message" })
		if msg := bob.text("#message-text"); !strings.Contains(msg, c.want) {
			t.Errorf("%s invite: page says %q, want %q", c.name, msg, c.want)
		}
		if s.SelfID != "" {
			t.Errorf("%s invite: the page joined as %s", c.name, s.SelfID)
		}
	}

	// Declining sends nothing: the caller sees nobody arrive.
	bob.navigate("about:blank")
	bob.navigate(link)
	bob.do(chromedp.WaitVisible(chromedp.CSS("#decline-button")))
	if got := bob.text("#invite-from"); got != "Alice" {
		t.Errorf("invitee sees the inviter as %q, want Alice", got)
	}
	// Host and guest read the invite's expiry in one format.
	hostExpiry := untilPattern.FindStringSubmatch(alice.text("#invite-panel-text"))
	guestExpiry := untilPattern.FindStringSubmatch(bob.text("#invite-expiry"))
	if hostExpiry == nil || guestExpiry == nil || hostExpiry[1] != guestExpiry[1] {
		t.Errorf("invite expiry: the host reads %q, the guest %q; want one format", hostExpiry, guestExpiry)
	}
	bob.do(chromedp.Click(chromedp.CSS("#decline-button")))
	bob.waitState("the declined message", func(s pageState) bool { return s.Screen == "message" })
	if msg := bob.text("#message-title"); !strings.Contains(msg, "declined") {
		t.Errorf("after declining the page says %q", msg)
	}
	time.Sleep(2 * time.Second) // a join, had there been one, would show by now
	if s := alice.state(); len(s.Participants) != 1 {
		t.Fatalf("after a decline the caller sees %+v, want only herself", s.Participants)
	}

	// Accepting: the caller sees the invitee arrive, then ends the call for
	// both.
	bob.navigate("about:blank")
	bob.joinAsGuest(alice, link, "Alice", "Bob")
	alice.waitEncrypted(1)
	bob.waitEncrypted(1)
	var endHidden bool
	if err := bob.eval(`document.getElementById('end-button').hidden`, &endHidden); err != nil || !endHidden {
		t.Errorf("the invitee is offered to end the call (hidden %v, %v)", endHidden, err)
	}
	alice.do(chromedp.Click(chromedp.CSS("#end-button")), chromedp.Click(chromedp.CSS("#end-button")))
	// The ended view says who ended the call and when, once.
	for _, c := range []struct {
		p   *page
		who string
	}{{alice, "You ended the call"}, {bob, "Alice ended the call"}} {
		s := c.p.waitState("the call to end", func(s pageState) bool { return s.Screen == "message" })
		if s.ClosedReason != "room_ended" {
			t.Errorf("%s: call closed with %q, want room_ended", c.p.name, s.ClosedReason)
		}
		title, text := c.p.text("#message-title"), c.p.text("#message-text")
		if !strings.Contains(text, c.who) || !strings.Contains(text, " on ") || strings.Contains(text, title) {
			t.Errorf("%s: the ended view says %q / %q; want %q and when, not the title again", c.p.name, title, text, c.who)
		}
	}

	// The link is dead now.
	bob.navigate("about:blank")
	bob.navigate(link)
	bob.waitState("the ended-call message", func(s pageState) bool { return s.Screen == "message" })
	if title, msg := bob.text("#message-title"), bob.text("#message-text"); !strings.Contains(msg, "Alice ended this call") || msg == title {
		t.Errorf("the link of an ended call says %q / %q", title, msg)
	}
}

// untilPattern finds the date in "... until <date>; ..." or "until <date>.".
var untilPattern = regexp.MustCompile(`until ([^;]+?)[;.]`)
