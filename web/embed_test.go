package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandlerServesPageAndModules(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/", "/join"} {
		resp := get(t, h, http.MethodGet, p, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", p, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", p, ct)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", p, cc)
		}
		if !strings.Contains(body(t, resp), `<script type="module" src="/app.js">`) {
			t.Errorf("GET %s: not the app page", p)
		}
	}
	for p, want := range map[string]string{
		"/app.js":           "text/javascript; charset=utf-8",
		"/session.js":       "text/javascript; charset=utf-8",
		"/app.css":          "text/css; charset=utf-8",
		"/favicon.svg":      "image/svg+xml",
		"/e2ee/identity.js": "text/javascript; charset=utf-8",
	} {
		resp := get(t, h, http.MethodGet, p, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != want {
			t.Errorf("GET %s: Content-Type %q, want %q", p, ct, want)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", p)
		}
	}
}

func TestHandlerHeadersAndErrors(t *testing.T) {
	h := Handler()
	resp := get(t, h, http.MethodGet, "/", nil)
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "worker-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP allows unsafe sources: %q", csp)
	}
	if rp := resp.Header.Get("Referrer-Policy"); rp != "no-referrer" {
		t.Errorf("Referrer-Policy %q", rp)
	}

	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if resp := get(t, h, http.MethodGet, "/", map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation: %d, want 304", resp.StatusCode)
	}
	for _, p := range []string{"/nope", "/e2ee/", "/static/app.js", "/../embed.go", "/e2ee/test/index.html", "/embed.go"} {
		if resp := get(t, h, http.MethodGet, p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	resp = get(t, h, http.MethodPost, "/", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if resp := get(t, h, http.MethodHead, "/app.js", nil); resp.StatusCode != http.StatusOK || body(t, resp) != "" {
		t.Errorf("HEAD /app.js: %d", resp.StatusCode)
	}
}

// The page works under the CSP only without inline code: no inline
// scripts, no event-handler attributes, no inline styles.
func TestPageHasNoInlineCode(t *testing.T) {
	page, err := static.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`),
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),
		regexp.MustCompile(`(?i)\sstyle\s*=`),
		regexp.MustCompile(`(?i)<style`),
		regexp.MustCompile(`(?i)javascript:`),
	} {
		if m := re.Find(page); m != nil {
			t.Errorf("index.html has inline code: %q", m)
		}
	}
}

// codeLines is a script without its comment lines (those starting with
// "//", "/*" or "*"), where usage examples mention imports that are not.
func codeLines(script []byte) string {
	var b strings.Builder
	for line := range strings.Lines(string(script)) {
		t := strings.TrimSpace(line)
		if !strings.HasPrefix(t, "//") && !strings.HasPrefix(t, "/*") && !strings.HasPrefix(t, "*") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// Every module import of every served script resolves to a served file, so
// a typo in a path fails here rather than as a blank page.
func TestModuleImportsResolve(t *testing.T) {
	h := Handler().(*handler)
	importRE := regexp.MustCompile(`(?m)(?:^|[;\s])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|new URL\(\s*['"]([^'"]+)['"]\s*,\s*import\.meta\.url`)
	n := 0
	for name, f := range h.files {
		if path.Ext(name) != ".js" {
			continue
		}
		for _, m := range importRE.FindAllStringSubmatch(codeLines(f.body), -1) {
			spec := m[1] + m[2] + m[3]
			if !strings.HasPrefix(spec, ".") && !strings.HasPrefix(spec, "/") {
				t.Errorf("%s imports %q: bare specifiers do not load without a build step", name, spec)
				continue
			}
			target := spec
			if !strings.HasPrefix(spec, "/") {
				target = path.Join(path.Dir(name), spec)
			}
			if h.files[target] == nil {
				t.Errorf("%s imports %q (%s), which is not served", name, spec, target)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("found no imports at all; the pattern is broken")
	}
}

// A cluster node's page may connect to the other nodes, over HTTP and
// WebSocket, and to nothing else.
func TestClusterHandlerCSP(t *testing.T) {
	h := ClusterHandler(func() []string { return []string{"https://n1.example", "http://127.0.0.1:7880", "bad url;"} })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	want := "connect-src 'self' https://n1.example wss://n1.example http://127.0.0.1:7880 ws://127.0.0.1:7880; "
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, want) {
		t.Errorf("CSP %q, want %q in it", csp, want)
	}
}
