package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sotto-voice/sotto/internal/browsertest"
)

// e2eeServer serves web/static and the e2ee test vectors (the same files
// the Go implementation tests against) on loopback.
func e2eeServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.Dir("static")))
	mux.Handle("/testdata/", http.StripPrefix("/testdata/", http.FileServer(http.Dir(filepath.Join("..", "e2ee", "testdata")))))
	mux.HandleFunc("/favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv := httptest.NewUnstartedServer(mux)
	srv.Start()
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server not on loopback: %s", srv.URL)
	}
	return srv
}

type pageResult struct {
	Group string `json:"group"`
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// runPage opens a test page and waits for it to publish
// window[global] = {done: true, results: [...]}.
func runPage(t *testing.T, url, global string) []pageResult {
	t.Helper()
	return runPageIn(t, browsertest.New(t, browsertest.Options{Name: "e2ee"}), url, global)
}

func runPageIn(t *testing.T, ctx context.Context, url, global string) []pageResult {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate %s: %v", url, err)
	}
	wait, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	raw, err := chromedp.Run(wait, chromedp.Poll[string](
		fmt.Sprintf(`window.%s && window.%s.done && JSON.stringify(window.%s.results)`, global, global, global),
		chromedp.WithPollingInterval(100*time.Millisecond)))
	if err != nil {
		t.Fatalf("waiting for %s results: %v", url, err)
	}
	var results []pageResult
	if err := json.Unmarshal([]byte(raw), &results); err != nil {
		t.Fatalf("results: %v", err)
	}
	return results
}

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "e2ee", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// TestE2EEVectorsInBrowser runs every vector of e2ee/testdata through the
// JavaScript implementation in headless Chromium: RFC 9605 Appendix C
// (headers, AES-CTR-HMAC, SFrame in all five suites), every field of
// docs/PROTOCOL.md's sotto-vectors.json and the mute-state messages. Each vector must pass, and the
// page must have run exactly as many vectors of each group as the files
// hold, so that none is skipped silently.
func TestE2EEVectorsInBrowser(t *testing.T) {
	srv := e2eeServer(t)

	var rfc struct {
		Header     []json.RawMessage `json:"header"`
		AESCTRHMAC []json.RawMessage `json:"aes_ctr_hmac"`
		SFrame     []json.RawMessage `json:"sframe"`
	}
	readJSON(t, "rfc9605-test-vectors.json", &rfc)
	var sv struct {
		Identities       []json.RawMessage `json:"identities"`
		SafetyNumber     string            `json:"safety_number"`
		SignedPrekey     json.RawMessage   `json:"bob_signed_prekey"`
		OneTimePrekey    json.RawMessage   `json:"bob_one_time_prekey"`
		KEMPrekey        json.RawMessage   `json:"bob_kem_prekey"`
		OneTimeKEMPrekey json.RawMessage   `json:"bob_one_time_kem_prekey"`
		PQXDH            json.RawMessage   `json:"pqxdh"`
		Ratchet          []json.RawMessage `json:"ratchet"`
		LastResort       json.RawMessage   `json:"pqxdh_last_resort"`
		SFrameRatchet    []json.RawMessage `json:"sframe_ratchet"`
		FrameKeys        []json.RawMessage `json:"frame_keys"`
		Frames           []json.RawMessage `json:"frames"`
	}
	readJSON(t, "sotto-vectors.json", &sv)
	var mute struct {
		MuteState []json.RawMessage `json:"mute_state"`
		Invalid   []json.RawMessage `json:"invalid"`
	}
	readJSON(t, "mute-state-vectors.json", &mute)
	one := func(present bool) int {
		if present {
			return 1
		}
		return 0
	}
	want := map[string]int{
		"rfc9605.header":                len(rfc.Header),
		"rfc9605.aes_ctr_hmac":          len(rfc.AESCTRHMAC),
		"rfc9605.sframe":                len(rfc.SFrame),
		"sotto.identities":              len(sv.Identities),
		"sotto.safety_number":           one(sv.SafetyNumber != ""),
		"sotto.bob_signed_prekey":       one(sv.SignedPrekey != nil),
		"sotto.bob_one_time_prekey":     one(sv.OneTimePrekey != nil),
		"sotto.bob_kem_prekey":          one(sv.KEMPrekey != nil),
		"sotto.bob_one_time_kem_prekey": one(sv.OneTimeKEMPrekey != nil),
		"sotto.pqxdh":                   one(sv.PQXDH != nil),
		"sotto.ratchet":                 len(sv.Ratchet),
		"sotto.pqxdh_last_resort":       one(sv.LastResort != nil),
		"sotto.sframe_ratchet":          len(sv.SFrameRatchet),
		"sotto.frame_keys":              len(sv.FrameKeys),
		"sotto.frames":                  len(sv.Frames),
		"mute.mute_state":               len(mute.MuteState),
		"mute.invalid":                  len(mute.Invalid),
	}
	// The RFC's five SFrame suites and three CTR-HMAC suites must all be there.
	if want["rfc9605.sframe"] != 5 || want["rfc9605.aes_ctr_hmac"] != 3 || want["rfc9605.header"] == 0 {
		t.Fatalf("unexpected RFC 9605 vector file: %v", want)
	}

	results := runPage(t, srv.URL+"/e2ee/test/vectors.html", "vectorResults")
	got := map[string]int{}
	failed := 0
	for _, r := range results {
		got[r.Group]++
		if !r.OK {
			failed++
			t.Errorf("%s %s: %s", r.Group, r.Name, r.Error)
		}
	}
	for g, n := range want {
		if got[g] != n {
			t.Errorf("group %s: ran %d vectors, the file has %d", g, got[g], n)
		}
	}
	for g := range got {
		if _, ok := want[g]; !ok && g != "sotto.sealer" {
			t.Errorf("unexpected result group %q", g)
		}
	}
	total := 0
	for _, n := range want {
		total += n
	}
	t.Logf("%d results (%d vectors in the files), %d failed", len(results), total, failed)
}

// TestE2EEUnitsInBrowser runs the JavaScript modules' unit tests
// (test/units.js) in Chromium: ratchet bounds and the injected clock,
// PQXDH refusals (bad or missing KEM prekeys, replays), both ML-KEM
// backends, frame-key chains, the receiver's ring, replay window and
// grace period, every suite, empty frames and the worker's stream.
func TestE2EEUnitsInBrowser(t *testing.T) {
	srv := e2eeServer(t)
	results := runPage(t, srv.URL+"/e2ee/test/units.html", "unitResults")
	for _, r := range results {
		if !r.OK {
			t.Errorf("%s: %s", r.Name, r.Error)
		}
	}
	if len(results) < 20 {
		t.Errorf("only %d tests ran", len(results))
	}
}

// TestE2EECallFlowInBrowser runs CallCrypto instances against each other in
// one page (test/callflow.js): sessions and frame keys agree, a join
// advances every chain, a leave rekeys (with the switch by acks and by the
// delay), frames before a key arrive count as awaiting_key and not as
// failures, replayed, forged and malformed frames are dropped by reason, a
// changed identity is reported and held until the app accepts it, and two
// callers initiating at once keep one session.
func TestE2EECallFlowInBrowser(t *testing.T) {
	srv := e2eeServer(t)
	results := runPage(t, srv.URL+"/e2ee/test/callflow.html", "callflowResults")
	failed := 0
	for _, r := range results {
		if !r.OK {
			failed++
			t.Errorf("%s: %s", r.Name, r.Error)
		}
	}
	// Fewer checks than written means the page stopped early.
	if len(results) < 40 {
		t.Errorf("only %d checks ran", len(results))
	}
	t.Logf("%d checks, %d failed", len(results), failed)
}

// TestE2EETransformInBrowser sends the fake microphone between two peer
// connections in one page through the real worker (worker.js) and
// transform.js, with RTCRtpScriptTransform and with the createEncodedStreams
// fallback: frames are encrypted and decrypted and the audio plays; without
// the key they are dropped as awaiting_key, under a wrong key as
// auth_failed, and never decrypted.
func TestE2EETransformInBrowser(t *testing.T) {
	srv := e2eeServer(t)
	for _, api := range []string{"script", "streams"} {
		t.Run(api, func(t *testing.T) {
			ctx := browsertest.New(t, browsertest.Options{Name: "transform-" + api, FakeAudio: browsertest.WriteToneWAV(t, 3*time.Second)})
			results := runPageIn(t, ctx, srv.URL+"/e2ee/test/transform.html?api="+api, "transformResults")
			unsupported, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!window.transformResults.unsupported`))
			if err != nil {
				t.Fatal(err)
			}
			if unsupported {
				t.Skip("this Chromium has no createEncodedStreams")
			}
			for _, r := range results {
				if !r.OK {
					t.Errorf("%s: %s", r.Name, r.Error)
				}
			}
			if len(results) < 9 {
				t.Errorf("only %d checks ran", len(results))
			}
		})
	}
}

// openBenchPage opens test/bench.html in a fresh Chromium.
func openBenchPage(b *testing.B) context.Context {
	srv := httptest.NewServer(http.FileServer(http.Dir("static")))
	b.Cleanup(srv.Close)
	ctx := browsertest.New(b, browsertest.Options{Name: "bench"})
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/e2ee/test/bench.html")); err != nil {
		b.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.benchReady === true`)); err != nil {
		b.Fatal(err)
	}
	return ctx
}

// BenchmarkE2EEFramesInBrowser measures sealing and opening one 120-byte
// frame in Chromium (the worker's per-frame work) for the default suite
// and an AES-CTR-HMAC one. A call needs 50 frames a second per
// participant heard.
func BenchmarkE2EEFramesInBrowser(b *testing.B) {
	ctx := openBenchPage(b)
	for _, suite := range []int{4, 1} {
		b.Run(fmt.Sprintf("suite=%d", suite), func(b *testing.B) {
			b.ResetTimer()
			ms, err := chromedp.Run(ctx, chromedp.Evaluate[float64](fmt.Sprintf(`benchFrames(%d, %d)`, suite, b.N), chromedp.EvalAwaitPromise))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(ms*1e6/float64(b.N), "ns/frame-in-js")
		})
	}
}

// BenchmarkPQXDHInBrowser measures a session's setup in Chromium with each
// ML-KEM-768 backend: initiating (verifying the bundle, encapsulating,
// X25519, sealing the first message) and responding (decapsulating,
// X25519, the first ratchet step and decryption), per session, and making
// the prekeys of an upload, per pair of one-time prekeys (X25519 and
// ML-KEM-768, signed).
func BenchmarkPQXDHInBrowser(b *testing.B) {
	ctx := openBenchPage(b)
	for _, backend := range []string{"webcrypto", "noble"} {
		b.Run(backend, func(b *testing.B) {
			b.ResetTimer()
			var r struct {
				UploadMs   float64 `json:"uploadMs"`
				InitiateMs float64 `json:"initiateMs"`
				RespondMs  float64 `json:"respondMs"`
			}
			raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](fmt.Sprintf(`benchPQXDH(%q, %d)`, backend, b.N), chromedp.EvalAwaitPromise))
			if err != nil {
				b.Fatal(err)
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(r.InitiateMs*1e6/float64(b.N), "ns/initiate-in-js")
			b.ReportMetric(r.RespondMs*1e6/float64(b.N), "ns/respond-in-js")
			b.ReportMetric(r.UploadMs*1e6/float64(b.N), "ns/prekey-pair-in-js")
		})
	}
}
