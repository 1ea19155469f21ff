package browsertest

import (
	"context"
	"fmt"
	"iter"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// EnvChromium names an explicit browser binary; it wins over the PATH search.
const EnvChromium = "SOTTO_CHROMIUM"

// DefaultTimeout bounds a browser's whole life when Options.Timeout is zero.
const DefaultTimeout = 2 * time.Minute

// Options configures one browser.
type Options struct {
	// FakeAudio is a WAV file that the fake microphone plays in a loop
	// (see WriteToneWAV). Empty means Chromium's built-in fake device
	// (a beep). Fake media devices and auto-granted permission are always on.
	FakeAudio string
	// Timeout bounds the browser's life; zero means DefaultTimeout.
	Timeout time.Duration
	// Name prefixes console lines in the test log, to tell browsers apart.
	Name string
	// OnConsole, if set, receives every console message and exception
	// besides the test log (e.g. to wait for a line).
	OnConsole func(Message)
	// ExtraFlags are added to the command line ("name" → value; true for a
	// bare switch).
	ExtraFlags map[string]any
}

// Message is one console line or uncaught exception of a page or of one of
// its dedicated workers (whose console Chromium reports through the page's
// Log domain).
type Message struct {
	Level string // "log", "info", "warning", "error", "debug", ... or "exception"
	Text  string
}

// Find returns the path of the Chromium binary to use, or "" when none is
// installed.
func Find() string {
	if p := os.Getenv(EnvChromium); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Require returns the browser path; without one it skips the test, or fails
// it when running on CI (CI=true), where a missing browser is a setup error.
func Require(t testing.TB) string {
	t.Helper()
	p := Find()
	if p == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no Chromium found (set $%s or install chromium); required on CI", EnvChromium)
		}
		t.Skipf("no Chromium found (set $%s or install chromium)", EnvChromium)
	}
	return p
}

// New starts a fresh headless Chromium with its own profile and returns the
// context of its first tab, ready for chromedp.Do and chromedp.Run. The
// browser is closed and its profile removed when the test ends; it is killed
// earlier if it outlives Options.Timeout.
func New(t testing.TB, opts Options) context.Context {
	t.Helper()
	path := Require(t)
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}

	flags := slices.Clone(chromedp.DefaultExecAllocatorOptions[:])
	flags = append(flags,
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // tests run as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		// Host candidates as real addresses, not mDNS names, and the
		// loopback interface allowed, so ICE works against 127.0.0.1.
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	if opts.FakeAudio != "" {
		flags = append(flags, chromedp.Flag("use-file-for-fake-audio-capture", opts.FakeAudio))
	}
	for name, v := range opts.ExtraFlags {
		flags = append(flags, chromedp.Flag(name, v))
	}

	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, flags...)
	// Cleanups run last-registered first: close the tab and the browser
	// (waiting for the process to exit), then release the timeout.
	t.Cleanup(cancelTimeout)
	t.Cleanup(cancelAlloc)
	return openTab(t, allocCtx, opts.Name, opts.OnConsole, true)
}

// NewTab opens another tab in the browser of ctx (a context from New),
// sharing its profile, with its console copied to the test log too.
func NewTab(t testing.TB, ctx context.Context, name string, onConsole func(Message)) context.Context {
	t.Helper()
	return openTab(t, ctx, name, onConsole, false)
}

// openTab opens the first tab of a new browser (newBrowser) or another tab
// in a running one; browser-level options apply only to the first.
func openTab(t testing.TB, parent context.Context, name string, onConsole func(Message), newBrowser bool) context.Context {
	t.Helper()
	if name == "" {
		name = "browser"
	}
	c := &console{t: t, prefix: name, forward: onConsole, done: make(chan struct{})}
	var opts []chromedp.ContextOption
	if newBrowser {
		opts = append(opts, chromedp.WithErrorf(c.errorf))
	}
	tabCtx, cancelTab := chromedp.NewContext(parent, opts...)
	// The console goroutine ends when the tab's context does; wait for it so
	// that nothing logs after the test has finished (that would panic).
	t.Cleanup(func() {
		cancelTab()
		<-c.done
		c.mu.Lock()
		c.stopped = true
		c.mu.Unlock()
	})
	// Console starts the browser (first tab) or opens the tab.
	messages := chromedp.Console(tabCtx)
	go c.run(messages)
	if err := chromedp.Do(tabCtx); err != nil {
		t.Fatalf("start chromium tab %q: %v", name, err)
	}
	return tabCtx
}

// console copies a tab's console into the test log.
type console struct {
	t       testing.TB
	prefix  string
	forward func(Message)
	done    chan struct{}

	mu      sync.Mutex
	stopped bool // set when the test ends: logging after that would panic
}

func (c *console) run(messages iter.Seq2[chromedp.ConsoleMessage, error]) {
	defer close(c.done)
	for m, err := range messages {
		if err != nil {
			return
		}
		text := m.Text
		if m.URL != "" && (m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleError) {
			text = fmt.Sprintf("%s (%s:%d:%d)", text, m.URL, m.Line+1, m.Column+1)
		}
		c.emit(Message{Level: string(m.Type), Text: text})
	}
}

func (c *console) emit(m Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.t.Logf("[%s %s] %s", c.prefix, m.Level, m.Text)
	if c.forward != nil {
		c.forward(m)
	}
}

// errorf receives chromedp's own errors (protocol trouble), which may come
// from other goroutines, even after the test ended.
func (c *console) errorf(format string, args ...any) {
	c.emit(Message{Level: "chromedp", Text: fmt.Sprintf(format, args...)})
}
