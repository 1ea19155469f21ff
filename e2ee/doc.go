// Package e2ee implements Sotto's end-to-end encryption: device identities
// and safety numbers, PQXDH key agreement (X25519 with ML-KEM-768), the
// Double Ratchet, per-sender frame-key chains and SFrame (RFC 9605),
// messages and encrypted files. It is a pure library with no network or
// file I/O (files are read and written through io.Reader and io.Writer)
// and no goroutines; only clients use it. docs/PROTOCOL.md gives every
// byte it produces, and testdata/ holds the vectors another implementation
// must reproduce.
//
// # Sessions
//
// A device has one Identity (NewIdentity; persist MarshalBinary, restore
// with ParseIdentity) and a PrekeyStore whose signed and one-time prekeys,
// and signed ML-KEM-768 prekeys (a last-resort one and one-time ones), it
// uploads to the directory. To talk to a peer, the initiator fetches the
// peer's PrekeyBundle and calls InitiateSession, which refuses a bundle
// without a valid KEM prekey (ErrNoKEMPrekey): every session is
// post-quantum. Every Session.Encrypt returns an envelope payload for
// api.Envelope.Data. The responder passes the first payload to
// AcceptSession and later ones to Session.Decrypt (which returns
// ErrOtherSession for an initial message of a new session: give that to
// AcceptSession). Compare Session.PeerIdentity with what you knew of the
// peer (CheckIdentity) and show SafetyNumber to the user.
//
// # Frames
//
// Each participant has one FrameSender and one FrameReceiver per call.
// The sender's keys travel as ratchet plaintexts (FrameKey.MarshalBinary);
// receivers install them with FrameReceiver.SetKey and answer with the
// FrameKeyAck it returns. On a join every sender calls Advance and sends
// the keys it returns to the newcomer only; on a leave every sender calls
// Rekey with the remaining participants, sends them the new key and feeds
// their acks to Acknowledge, while every receiver calls RemoveParticipant.
// Seal and Open work on caller-provided buffers and allocate nothing in
// steady state. Open takes the participant whose track carried the frame,
// and drops and counts every frame that fails (Stats) with an error that
// says why (ErrAwaitingKey, ErrWrongSender, …).
//
// # Messages and files
//
// Text and file messages travel as ratchet plaintexts too, one copy per
// recipient in its session (Message, answered by a Receipt once the
// recipient's application has it). A file is encrypted once under a fresh
// key (NewFileKey, EncryptFile: chunks sealed in the manner of age's
// STREAM), stored as ciphertext on the server, and its FileRef (key,
// digest, name, type, size) goes in a Message; DecryptFile refuses a file
// with any chunk altered, missing, moved or cut.
//
// Envelope data for which IsPayload is true belongs to the sessions;
// anything else is the application's.
//
// Functions that generate keys take an io.Reader (nil means crypto/rand)
// and functions that expire state take the current time, so that the
// library is deterministic under test.
package e2ee
