package agent

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// ProtocolVersion is the version this package speaks. A peer that sends any
// other version is refused; see docs/PROTOCOL.md for the versioning rules.
const ProtocolVersion = 1

// MaxFrame is the largest payload a frame may carry (8 MiB): an invoke's
// event, a result's output, an error's message and trace. Other types
// have smaller limits (Type.MaxPayload).
const MaxFrame = 8 << 20

// MaxLogFrame is the largest payload of a log frame (64 KiB); agents cut a
// longer message to fit.
const MaxLogFrame = 64 << 10

// MaxSmallFrame is the largest payload of init, ready and forked: a few
// names and numbers.
const MaxSmallFrame = 64 << 10

// HeaderSize is the fixed size of a frame header.
const HeaderSize = 8

// Magic is the first two bytes of every frame.
var Magic = [2]byte{'C', 'Z'}

// Type is a message type.
type Type uint8

// Message types. Values are part of the wire format: never renumber.
const (
	TypeInit   Type = 1 // daemon -> agent: Init
	TypeReady  Type = 2 // agent -> daemon: Ready
	TypeInvoke Type = 3 // daemon -> agent: Invoke
	TypeResult Type = 4 // agent -> daemon: Result
	TypeError  Type = 5 // agent -> daemon: ErrorMsg
	TypeLog    Type = 6 // agent -> daemon: Log
	TypeForked Type = 7 // daemon -> agent: Forked (answered by Ready)
)

func (t Type) String() string {
	switch t {
	case TypeInit:
		return "init"
	case TypeReady:
		return "ready"
	case TypeInvoke:
		return "invoke"
	case TypeResult:
		return "result"
	case TypeError:
		return "error"
	case TypeLog:
		return "log"
	case TypeForked:
		return "forked"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Valid reports whether t is a known message type.
func (t Type) Valid() bool { return t >= TypeInit && t <= TypeForked }

// MaxPayload is the largest payload a frame of type t may carry. A reader
// refuses a longer one from its header, before allocating anything; what
// an instance may make the daemon allocate per frame is this, not 8 MiB.
func (t Type) MaxPayload() int {
	switch t {
	case TypeLog:
		return MaxLogFrame
	case TypeInit, TypeReady, TypeForked:
		return MaxSmallFrame
	}
	return MaxFrame
}

// Frame is one message on the wire. Payload is JSON.
type Frame struct {
	Version uint8
	Type    Type
	Payload []byte
}

// ErrProtocol is wrapped by every error caused by a peer that does not
// follow the protocol. It is errdefs.ErrProtocol, so the API answers it
// as a ProtocolError (502) that names the violation.
var ErrProtocol = errdefs.ErrProtocol

// protocolError is a peer's protocol violation: it is both ErrProtocol and
// errdefs.ErrFunction (the instance is broken, not the daemon's caller).
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "agent protocol: " + e.msg }

func (e *protocolError) Is(target error) bool {
	return target == ErrProtocol || target == errdefs.ErrFunction
}

func protoErrorf(format string, args ...any) error {
	return &protocolError{msg: fmt.Sprintf(format, args...)}
}

// WriteFrame writes f as one frame with a single Write call. A zero
// f.Version is written as ProtocolVersion; any other version is written as
// given (tests use that to speak a wrong version).
func WriteFrame(w io.Writer, f Frame) error {
	if max := f.Type.MaxPayload(); len(f.Payload) > max {
		return fmt.Errorf("write %s frame: payload of %d bytes exceeds %d: %w", f.Type, len(f.Payload), max, errdefs.ErrTooLarge)
	}
	v := f.Version
	if v == 0 {
		v = ProtocolVersion
	}
	buf := make([]byte, HeaderSize+len(f.Payload))
	buf[0], buf[1] = Magic[0], Magic[1]
	buf[2] = v
	buf[3] = byte(f.Type)
	binary.BigEndian.PutUint32(buf[4:8], uint32(len(f.Payload)))
	copy(buf[HeaderSize:], f.Payload)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write %s frame: %w", f.Type, err)
	}
	return nil
}

// ParseHeader validates an 8-byte header and returns the frame's version,
// type and payload length.
func ParseHeader(h [HeaderSize]byte) (version uint8, typ Type, n uint32, err error) {
	if h[0] != Magic[0] || h[1] != Magic[1] {
		return 0, 0, 0, protoErrorf("bad magic %#02x%02x, want %q", h[0], h[1], Magic[:])
	}
	version, typ, n = h[2], Type(h[3]), binary.BigEndian.Uint32(h[4:8])
	if version != ProtocolVersion {
		return version, typ, n, protoErrorf("peer speaks protocol version %d, this side speaks version %d", version, ProtocolVersion)
	}
	if !typ.Valid() {
		return version, typ, n, protoErrorf("unknown message type %d", uint8(typ))
	}
	if max := typ.MaxPayload(); uint64(n) > uint64(max) {
		return version, typ, n, protoErrorf("%s frame of %d bytes exceeds the limit of %d for its type", typ, n, max)
	}
	return version, typ, n, nil
}

// ReadFrame reads one frame. It validates the header before allocating the
// payload, so it never allocates more than its type's MaxPayload. A clean EOF before the
// first header byte is returned as io.EOF; a frame cut short is
// io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader) (Frame, error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	v, t, n, err := ParseHeader(h)
	if err != nil {
		return Frame{}, err
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("read %s payload: %w", t, err)
	}
	return Frame{Version: v, Type: t, Payload: p}, nil
}
