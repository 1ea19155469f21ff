package client

import "net"

// loopback keeps ICE on the loopback interface: tests talk to 127.0.0.1 only.
func loopback(ip net.IP) bool { return ip.IsLoopback() }

// tconn returns the transport of the call's current join.
func (c *Call) tconn() *conn { return c.session().conn }

// te2e returns the end-to-end state of the call's current join.
func (c *Call) te2e() *e2eeState { return c.session().e2e }
