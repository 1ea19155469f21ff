package web_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/testserver"
)

// TestBrowserErrorMessages: what a person sees when the microphone is
// denied, the server cannot be reached, or the call is full.
func TestBrowserErrorMessages(t *testing.T) {
	wav := browsertest.WriteToneWAV(t, 5*time.Second)

	t.Run("microphone denied", func(t *testing.T) {
		srv := startCallServer(t)
		ctx := browsertest.New(t, browsertest.Options{
			Name:       "denied",
			FakeAudio:  wav,
			ExtraFlags: map[string]any{"use-fake-ui-for-media-stream": "deny"},
		})
		p := &page{t: t, name: "denied", ctx: ctx}
		p.navigate(srv.URL + "/")
		p.do(chromedp.WaitVisible(chromedp.CSS("#start-name")),
			chromedp.SendKeys(chromedp.CSS("#start-name"), "Dana"),
			chromedp.Click(chromedp.CSS("#start-button")))
		s := p.waitState("the microphone error", func(s pageState) bool { return s.Banner != "" })
		if !strings.Contains(s.Banner, "Microphone access was denied") || s.Screen != "start" {
			t.Errorf("screen %q, banner %q; want the microphone-denied message on the start screen", s.Screen, s.Banner)
		}
	})

	t.Run("server unreachable", func(t *testing.T) {
		srv := startCallServer(t)
		p := openPage(t, "offline", wav)
		p.navigate(srv.URL + "/")
		p.do(chromedp.WaitVisible(chromedp.CSS("#start-name")))
		srv.http.CloseClientConnections()
		srv.http.Close()
		p.do(chromedp.SendKeys(chromedp.CSS("#start-name"), "Olga"), chromedp.Click(chromedp.CSS("#start-button")))
		s := p.waitState("the unreachable message", func(s pageState) bool { return s.Banner != "" })
		if !strings.Contains(s.Banner, "cannot be reached") {
			t.Errorf("banner %q; want the server-unreachable message", s.Banner)
		}
	})

	t.Run("room full", func(t *testing.T) {
		srv := startCallServerWith(t, &testserver.Options{MaxParticipants: 1})
		alice := openPage(t, "alice", wav)
		bob := openPage(t, "bob", wav)
		link := alice.startCall(srv, "Alice").InviteLink
		bob.joinAsGuest(alice, link, "Alice", "Bob")
		bob.waitState("the room-full message", func(s pageState) bool { return s.Screen == "message" })
		if msg := bob.text("#message-text"); !strings.Contains(msg, "full") {
			t.Errorf("a full call says %q", msg)
		}
		if s := alice.state(); len(s.Participants) != 1 {
			t.Errorf("the caller sees %+v in a room of one", s.Participants)
		}
	})
}
