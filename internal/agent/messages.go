package agent

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// DefaultOutputLimit is the per-invocation bound on each of stdout and
// stderr when Init.OutputLimit is zero.
const DefaultOutputLimit = 64 << 10

// Init is the first message, daemon -> agent.
type Init struct {
	Version     int    `json:"version"`      // ProtocolVersion
	Function    string `json:"function"`     // function name (context.function_name)
	Runtime     string `json:"runtime"`      // "python", "node", "native"
	Handler     string `json:"handler"`      // "main.handler", or the native executable
	CodeDir     string `json:"code_dir"`     // where the function's code is, e.g. /var/task
	OutputLimit int    `json:"output_limit"` // bytes of stdout and of stderr kept per invocation; 0 = DefaultOutputLimit
	// Template is set only when the instance will be frozen as a fork
	// template (and its forks checkpointed for warm and cold boots): the
	// agent may then spend init time that every clone saves, which a
	// scratch boot must not pay (the Java agent's young collection,
	// docs/JAVA.md). Omitted when false, so older agents see what they did.
	Template bool `json:"template,omitempty"`
}

// Ready answers Init and Forked, agent -> daemon.
type Ready struct {
	Version int   `json:"version"`
	PID     int   `json:"pid"`      // the agent's pid as it sees itself (inside its PID namespace)
	ReadyNS int64 `json:"ready_ns"` // CLOCK_MONOTONIC when the handler was loaded (or the reseed done)

	Logs          []Log `json:"-"` // log frames received before the answer (not on the wire)
	LogsTruncated bool  `json:"-"` // more log frames came than MaxLogs/MaxLogBytes keep
}

// Invoke asks for one call of the handler, daemon -> agent.
type Invoke struct {
	ID         string          `json:"id"`
	Event      json.RawMessage `json:"event"`       // the event, raw JSON; empty is sent as null
	DeadlineMS int64           `json:"deadline_ms"` // time budget in ms from receipt; 0 = none
}

// Result is a successful call, agent -> daemon.
type Result struct {
	ID        string          `json:"id"`
	Output    json.RawMessage `json:"output"`   // the handler's return value, raw JSON
	EntryNS   int64           `json:"entry_ns"` // CLOCK_MONOTONIC at handler entry
	ExitNS    int64           `json:"exit_ns"`  // CLOCK_MONOTONIC at handler exit
	Stdout    string          `json:"stdout"`
	Stderr    string          `json:"stderr"`
	Truncated bool            `json:"truncated"` // stdout or stderr exceeded the output limit

	Logs          []Log `json:"-"` // log frames received during the call (not on the wire)
	LogsTruncated bool  `json:"-"` // more log frames came than MaxLogs/MaxLogBytes keep
}

// ErrorMsg is a failure, agent -> daemon: a handler that raised (ID set), a
// handler that could not be loaded (ID empty, answers Init), or a protocol
// problem the agent detected (Type "ProtocolError").
type ErrorMsg struct {
	ID        string `json:"id,omitempty"`
	Type      string `json:"type"` // exception class name, "SerializationError", "panic", ...
	Message   string `json:"message"`
	Trace     string `json:"trace,omitempty"`
	EntryNS   int64  `json:"entry_ns,omitempty"`
	ExitNS    int64  `json:"exit_ns,omitempty"`
	Stdout    string `json:"stdout,omitempty"`
	Stderr    string `json:"stderr,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
}

// Log is an out-of-band line from the agent (context.log in Python and
// Node), agent -> daemon. It may arrive at any time.
type Log struct {
	ID      string `json:"id,omitempty"` // invocation it belongs to, if any
	Message string `json:"message"`
}

// Forked tells a cloned agent to reseed its RNGs, daemon -> agent.
type Forked struct {
	Version int `json:"version"`
}

// FunctionError is the agent's error answer, as returned by Conn.
type FunctionError struct {
	Type, Message, Trace, Stdout, Stderr string
	Logs                                 []Log // log frames received before the error
	LogsTruncated                        bool  // more log frames came than MaxLogs/MaxLogBytes keep
}

func (e *FunctionError) Error() string {
	if e.Type == "" {
		return "function error: " + e.Message
	}
	return "function error: " + e.Type + ": " + e.Message
}

// ErrorType names the error after the function's exception class
// (errdefs.Typed): the API's error type and the metric's label.
func (e *FunctionError) ErrorType() string { return e.Type }

// Is makes errors.Is(err, errdefs.ErrFunction) true.
func (e *FunctionError) Is(target error) bool { return target == errdefs.ErrFunction }

// Encode marshals m into a frame of type t.
func Encode(t Type, m any) (Frame, error) {
	p, err := json.Marshal(m)
	if err != nil {
		return Frame{}, fmt.Errorf("encode %s: %w", t, err)
	}
	if max := t.MaxPayload(); len(p) > max {
		return Frame{}, fmt.Errorf("encode %s: payload of %d bytes exceeds %d: %w", t, len(p), max, errdefs.ErrTooLarge)
	}
	return Frame{Version: ProtocolVersion, Type: t, Payload: p}, nil
}

// Decode unmarshals f's payload into m, checking f's type is want. The
// payload must be one JSON object.
func Decode(f Frame, want Type, m any) error {
	if f.Type != want {
		return protoErrorf("got %s frame, want %s", f.Type, want)
	}
	p := bytes.TrimSpace(f.Payload)
	if len(p) == 0 || p[0] != '{' {
		return protoErrorf("%s payload is not a JSON object", f.Type)
	}
	if err := json.Unmarshal(p, m); err != nil {
		return protoErrorf("decode %s payload: %v", f.Type, err)
	}
	return nil
}

// DecodeAny decodes a frame's payload into the message struct for its type
// and returns a pointer to it (*Init, *Ready, ...).
func DecodeAny(f Frame) (any, error) {
	var m any
	switch f.Type {
	case TypeInit:
		m = new(Init)
	case TypeReady:
		m = new(Ready)
	case TypeInvoke:
		m = new(Invoke)
	case TypeResult:
		m = new(Result)
	case TypeError:
		m = new(ErrorMsg)
	case TypeLog:
		m = new(Log)
	case TypeForked:
		m = new(Forked)
	default:
		return nil, protoErrorf("unknown message type %d", uint8(f.Type))
	}
	if err := Decode(f, f.Type, m); err != nil {
		return nil, err
	}
	return m, nil
}
