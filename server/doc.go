// Package server assembles one Sotto server: the media relay, TURN
// (embedded, external or none), signaling, /metrics (and pprof), the
// browser client and the HTTP listener that serves them, with its
// connection caps and timeouts.
//
// New is the only place a server is put together: "sotto serve" fills a
// Config from its flags, and internal/testserver fills one with loopback
// defaults, so tests run the production wiring. The state store
// (Config.Store) is opened here too; with Redis the server is a node of a
// cluster (package cluster), which it drains when it shuts down.
//
//	srv, err := server.New(server.Config{Secret: secret, HTTP: server.HTTPConfig{Addr: ":7880"}})
//	...
//	err = srv.Serve(ctx) // until ctx ends, then a graceful shutdown
//
// This package must never import e2ee: the relay is unable to decrypt by
// construction.
package server
