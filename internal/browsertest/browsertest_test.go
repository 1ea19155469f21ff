package browsertest_test

import (
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/wait"
)

func TestToneWAVHeader(t *testing.T) {
	b := browsertest.ToneWAV(time.Second)
	if string(b[0:4]) != "RIFF" || string(b[8:16]) != "WAVEfmt " || string(b[36:40]) != "data" {
		t.Fatalf("bad WAV magic: %q", b[:44])
	}
	if got := binary.LittleEndian.Uint32(b[24:]); got != 48000 {
		t.Fatalf("sample rate %d", got)
	}
	if got, want := binary.LittleEndian.Uint32(b[40:]), uint32(2*48000); got != want {
		t.Fatalf("data size %d, want %d", got, want)
	}
	var peak int16
	for i := 44; i < len(b); i += 2 {
		peak = max(peak, int16(binary.LittleEndian.Uint16(b[i:])))
	}
	if peak < 20000 {
		t.Fatalf("peak %d: tone too quiet", peak)
	}
}

// TestBrowserRunsWithFakeMicrophone starts Chromium with the generated WAV as
// its microphone, checks that WebCrypto has the curves the e2ee code needs,
// that getUserMedia yields a live audio track, and that console lines and
// exceptions reach the Go side, a dedicated worker's console included.
func TestBrowserRunsWithFakeMicrophone(t *testing.T) {
	var mu sync.Mutex
	var seen []browsertest.Message
	ctx := browsertest.New(t, browsertest.Options{
		FakeAudio: browsertest.WriteToneWAV(t, 3*time.Second),
		OnConsole: func(m browsertest.Message) {
			mu.Lock()
			seen = append(seen, m)
			mu.Unlock()
		},
	})
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	// WebCrypto needs a secure context: http://127.0.0.1 is one.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<!doctype html><title>t</title>")
	}))
	defer srv.Close()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => {
		const x = await crypto.subtle.generateKey({name: "X25519"}, true, ["deriveBits"]);
		const e = await crypto.subtle.generateKey({name: "Ed25519"}, true, ["sign", "verify"]);
		const s = await navigator.mediaDevices.getUserMedia({audio: true});
		const tr = s.getAudioTracks()[0];
		console.log("hello from the page", 42);
		const src = URL.createObjectURL(new Blob(["console.log('hello from a worker')"], {type: "text/javascript"}));
		window.keepWorker = new Worker(src);
		setTimeout(() => { throw new Error("deliberate"); }, 0);
		return [x.publicKey.algorithm.name, e.publicKey.algorithm.name, tr.kind, tr.readyState].join(",");
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate: %v", err)
	}
	if want := "X25519,Ed25519,audio,live"; got != want {
		t.Fatalf("page says %q, want %q", got, want)
	}

	deadline := time.Now().Add(wait.Timeout)
	for {
		mu.Lock()
		var log, exc, worker bool
		for _, m := range seen {
			log = log || (m.Level == "log" && m.Text == "hello from the page 42")
			exc = exc || (m.Level == "exception" && strings.Contains(m.Text, "deliberate"))
			worker = worker || strings.Contains(m.Text, "hello from a worker")
		}
		mu.Unlock()
		if log && exc && worker {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("console capture incomplete: log=%v exception=%v worker=%v", log, exc, worker)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
