// Package web is Sotto's browser client: a page, its ES modules and the
// end-to-end encryption worker, embedded in the binary and served by
// Handler. No build step: the files under static/ are what the browser runs.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// all: the vendored modules include names that start with "_".
//
//go:embed all:static
var static embed.FS

// ContentSecurityPolicy is sent with every response. Only the page's own
// scripts, workers and styles run; it connects only to its own origin
// (fetch and the event-stream WebSocket), and nothing may frame it.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; worker-src 'self'; " +
	"connect-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// pages are the paths answered with index.html: the start page and the
// invite landing page, whose invite is in the URL fragment, never sent here.
var pages = map[string]bool{"/": true, "/join": true}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".json": "application/json",
}

// file is one embedded asset, ready to serve.
type file struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the browser client. Mount it at "/" behind the API routes
// (/v1/ and /healthz), which must take precedence.
func Handler() http.Handler { return ClusterHandler(nil) }

// ClusterHandler is Handler for a node of a cluster: the page may also
// connect to the base URLs nodes returns (the other nodes, where the
// rooms it joins may run), which its Content-Security-Policy then lists.
func ClusterHandler(nodes func() []string) http.Handler {
	files := make(map[string]*file)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := contentTypes[path.Ext(p)]
		if !ok || strings.Contains(p, "/test/") {
			return nil // only assets the page uses; e2ee's test pages stay out
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		files[strings.TrimPrefix(p, "static")] = &file{
			body:  body,
			ctype: ctype,
			etag:  `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		// The embedded tree is fixed at build time; failing to walk it is a
		// broken build, not a runtime condition.
		panic("web: read embedded files: " + err.Error())
	}
	return &handler{files: files, nodes: nodes}
}

type handler struct {
	files map[string]*file
	nodes func() []string
}

// csp is ContentSecurityPolicy with the cluster's nodes added to
// connect-src, for fetch (http, https) and event streams (ws, wss).
func (h *handler) csp() string {
	if h.nodes == nil {
		return ContentSecurityPolicy
	}
	var extra strings.Builder
	for _, n := range h.nodes() {
		u, err := url.Parse(n)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(u.Host, "; ,'") {
			continue
		}
		ws := "ws"
		if u.Scheme == "https" {
			ws = "wss"
		}
		extra.WriteString(" " + u.Scheme + "://" + u.Host + " " + ws + "://" + u.Host)
	}
	return strings.Replace(ContentSecurityPolicy, "connect-src 'self'", "connect-src 'self'"+extra.String(), 1)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", h.csp())
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	hdr.Set("Permissions-Policy", "microphone=(self), camera=(), geolocation=()")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if pages[p] {
		p = "/index.html"
	}
	f := h.files[p]
	if f == nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	hdr.Set("Content-Type", f.ctype)
	// Assets are not fingerprinted: the browser revalidates each time, and
	// the ETag makes that a 304 when nothing changed.
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", f.etag)
	http.ServeContent(w, r, p, time.Time{}, bytes.NewReader(f.body))
}
