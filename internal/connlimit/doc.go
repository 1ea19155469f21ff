// Package connlimit caps the connections a listener holds open: in total
// and per source address, so that one client cannot take every connection
// (or file descriptor) of the server. A refused connection is closed at
// once, before a byte is read from it, and counted.
package connlimit
