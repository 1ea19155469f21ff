package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"

	"github.com/sotto-voice/sotto/internal/testserver"
)

// eventProxy stands between the callers and the server on the event
// streams, as a hostile or failing relay would: it forwards every message
// both ways and, on the streams of one watched participant, lets the test
// drop or rewrite messages and cut the stream.
type eventProxy struct {
	upstream string // ws://host:port of the signaling server

	mu      sync.Mutex
	watched string
	down    filter // server -> watched participant
	up      filter // watched participant -> server
	links   map[*proxyLink]struct{}
	streams int // streams of the watched participant opened so far

	// record, if set, sees every message of every stream, both ways, as
	// it arrives.
	record func(msg []byte)
}

// filter sees one message of the given type and returns what to forward
// instead, or nil to drop it.
type filter func(typ string, msg []byte) []byte

type proxyLink struct {
	participant string
	cancel      context.CancelFunc
}

// startProxiedCallServer starts a call server whose event streams go
// through an eventProxy.
func startProxiedCallServer(t *testing.T) (*callServer, *eventProxy) {
	t.Helper()
	x := &eventProxy{links: map[*proxyLink]struct{}{}}
	srv := startCallServerVia(t, &testserver.Options{}, func(ts *testserver.Server) http.Handler {
		x.upstream = "ws" + strings.TrimPrefix(ts.URL, "http")
		return x
	})
	return srv, x
}

// watch applies the filters, and cut, to participant's streams.
func (x *eventProxy) watch(participant string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.watched = participant
}

// filter sets the filters of the watched participant's streams; nil
// forwards everything.
func (x *eventProxy) filter(down, up filter) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.down, x.up = down, up
}

// cut ends the watched participant's streams at once, without a closing
// handshake, as a lost connection does.
func (x *eventProxy) cut() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for l := range x.links {
		if l.participant == x.watched {
			l.cancel()
		}
	}
}

// opened returns how many streams the watched participant has opened.
func (x *eventProxy) opened() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.streams
}

func (x *eventProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	server, _, err := websocket.Dial(ctx, x.upstream+r.URL.RequestURI(), nil)
	if err != nil {
		http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer server.CloseNow()
	client, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer client.CloseNow()
	server.SetReadLimit(1 << 20)
	client.SetReadLimit(1 << 20)

	l := &proxyLink{participant: r.PathValue("id"), cancel: cancel}
	x.mu.Lock()
	x.links[l] = struct{}{}
	if l.participant == x.watched {
		x.streams++
	}
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		delete(x.links, l)
		x.mu.Unlock()
	}()

	done := make(chan struct{})
	go func() {
		defer close(done)
		x.pipe(ctx, l, server, client, func() filter { return x.down })
		cancel()
	}()
	x.pipe(ctx, l, client, server, func() filter { return x.up })
	cancel()
	<-done
}

// pipe forwards messages from src to dst through the current filter until
// either side ends or the link is cut.
func (x *eventProxy) pipe(ctx context.Context, l *proxyLink, src, dst *websocket.Conn, current func() filter) {
	for {
		typ, msg, err := src.Read(ctx)
		if err != nil {
			return
		}
		if x.record != nil {
			x.record(msg)
		}
		x.mu.Lock()
		f := current()
		if l.participant != x.watched {
			f = nil
		}
		x.mu.Unlock()
		if f != nil {
			var head struct {
				Type string `json:"type"`
			}
			_ = json.Unmarshal(msg, &head)
			if msg = f(head.Type, msg); msg == nil {
				continue
			}
		}
		if err := dst.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}
