// Package agent is the control-channel protocol between the daemon and the
// agent running inside an instance (the in-sandbox loop that loads the
// function's handler and calls it). docs/PROTOCOL.md is the normative
// description; this package is the daemon's side of it plus the framing that
// the Go SDK (sdk/go/function) shares.
//
// Wire format: every message is a frame, an 8-byte header followed by a JSON
// payload:
//
//	offset 0  2 bytes  magic "CZ" (0x43 0x5a)
//	offset 2  uint8    protocol version (ProtocolVersion, 1)
//	offset 3  uint8    message type (TypeInit ... TypeForked)
//	offset 4  uint32   payload length, big endian, at most Type.MaxPayload
//	                   (64 KiB for init, ready, forked, log; MaxFrame otherwise)
//
// Errors:
//   - ReadFrame and the Conn methods return an error that satisfies
//     errors.Is(err, ErrProtocol) (that is errdefs.ErrProtocol, and also
//     errdefs.ErrFunction: a peer that speaks garbage is a broken instance)
//     when the peer sends a malformed frame, a frame of another version (the
//     message names both versions), a frame over its type's limit, an
//     unexpected type, an answer for another invocation or an undecodable
//     payload. The message names the violation.
//   - Log frames are bounded per request (MaxLogs, MaxLogBytes): past the
//     bounds they are read and dropped and the answer's LogsTruncated is set.
//   - Conn.Init and Conn.Invoke return a *FunctionError when the agent
//     answered with an error message (the handler raised, could not be
//     loaded, or returned something that is not JSON). It satisfies
//     errors.Is(err, errdefs.ErrFunction).
//   - When the context is done, Conn methods return ctx.Err(); the Conn is
//     then unusable (a reply may be half read) and the caller kills the
//     instance.
//   - io.EOF (possibly wrapped) means the agent closed the channel (it exited).
//
// A Conn is safe for use by one goroutine at a time per request; calls are
// serialised by an internal mutex because the protocol has one request in
// flight per instance.
package agent
