// Package token is Sotto's signed-claims format, shared by the server, which
// mints and verifies, and by clients, which read a token's room and identity
// to address the server.
//
// Two kinds share one construction:
//
//	<prefix>.<base64url JSON claims>.<base64url HMAC-SHA256(key, "<prefix>.<claims>")>
//
// A room token ("sotto1", see [Mint] and [Verify]) admits one identity to one
// room until it expires; it is MACed with the server secret itself. An
// invite ("sotto-invite1", see [MintInvite] and [VerifyInvite]) is the
// capability to join a private call; it is MACed with a key derived from the
// secret. The prefix versions the format, names the kind and is MAC input,
// and the keys differ, so one kind is never accepted as the other.
//
// The package is pure: no I/O, no clock (callers pass the time), and it never
// imports e2ee. docs/API.md describes the format for other implementations;
// testdata/vectors.json holds its test vectors.
package token
