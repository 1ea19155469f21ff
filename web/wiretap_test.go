package web_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// wireTap stands between every client (pages and Go callers) and the
// server, as the operator of the relay could: it forwards everything and
// records every byte the server receives or sends on HTTP and on the event
// streams, with each envelope's data decoded, so that a test can look
// for plaintext in all of it.
type wireTap struct {
	URL string

	mu      sync.Mutex
	records [][]byte
	uploads [][]byte // bodies of blob uploads, as the blob store keeps them
}

func startWireTap(t *testing.T, upstream string) *wireTap {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	x := &wireTap{}
	events := &eventProxy{upstream: "ws://" + u.Host, links: map[*proxyLink]struct{}{}, record: x.recordEvent}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasPrefix(resp.Request.URL.Path, "/v1/") {
			return nil // the page's own files
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		x.record(body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x.record([]byte(r.Method + " " + r.URL.String()))
		for name, vs := range r.Header {
			x.record([]byte(name + ": " + strings.Join(vs, ",")))
		}
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			events.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		x.record(body)
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs") {
			x.mu.Lock()
			x.uploads = append(x.uploads, body)
			x.mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	x.URL = srv.URL
	return x
}

func (x *wireTap) record(b []byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.records = append(x.records, bytes.Clone(b))
}

// recordEvent records an event-stream message and, for an envelope, its
// decoded data.
func (x *wireTap) recordEvent(msg []byte) {
	x.record(msg)
	var env struct {
		Type string `json:"type"`
		Data []byte `json:"data"`
	}
	if json.Unmarshal(msg, &env) == nil && env.Type == "envelope" {
		x.record(env.Data)
	}
}

// find reports the first record that contains needle.
func (x *wireTap) find(needle []byte) (int, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, r := range x.records {
		if bytes.Contains(r, needle) {
			return i, true
		}
	}
	return 0, false
}

// checkNoPlaintext fails the test if any of the secrets, or any 32-byte
// window of any of the files (at 64 offsets each), was seen on the wire.
// visible are strings the server does see (such as identity names): the
// tap must have found them, or it is blind.
func (x *wireTap) checkNoPlaintext(t *testing.T, visible, secrets []string, files ...[]byte) {
	t.Helper()
	for _, s := range visible {
		if _, ok := x.find([]byte(s)); !ok {
			t.Fatalf("the tap never saw %q, which the server sees", s)
		}
	}
	for _, s := range secrets {
		if i, ok := x.find([]byte(s)); ok {
			t.Errorf("%q appears on the wire (record %d)", s, i)
		}
	}
	for _, f := range files {
		for k := range 64 {
			at := k * (len(f) - 32) / 63
			if i, ok := x.find(f[at : at+32]); ok {
				t.Fatalf("bytes %d-%d of a file appear on the wire (record %d)", at, at+32, i)
			}
		}
	}
}

// blobUploads returns the bodies of the blob uploads seen so far.
func (x *wireTap) blobUploads() [][]byte {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([][]byte(nil), x.uploads...)
}
