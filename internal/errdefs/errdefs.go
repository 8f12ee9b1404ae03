// Package errdefs holds the few error values shared by every layer.
//
// Libraries wrap one of these (fmt.Errorf("deploy %s: %w", name, ErrInvalid))
// so that the API layer can map an error to a status code in one place
// (internal/api) without knowing where it came from. Test with errors.Is.
package errdefs

import "errors"

var (
	// ErrInvalid: the caller's input is wrong (bad JSON, unknown runtime,
	// missing handler file, unsafe tarball). HTTP 400.
	ErrInvalid = errors.New("invalid argument")
	// ErrUnauthorized: the request does not carry the daemon's API token
	// (Authorization: Bearer). HTTP 401.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the request is well formed but this daemon's policy
	// refuses it (network "host" without --allow-host-network, code_path
	// outside every --code-root). HTTP 403.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: the named thing does not exist. HTTP 404.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the operation clashes with current state. HTTP 409.
	ErrConflict = errors.New("conflict")
	// ErrTooLarge: a body or archive exceeds a documented limit. HTTP 413.
	ErrTooLarge = errors.New("too large")
	// ErrUnavailable: capacity is exhausted (max_instances reached). HTTP 429.
	ErrUnavailable = errors.New("too many concurrent invocations")
	// ErrNotReady: something the request needs is being (re)built (a fork
	// template); retrying soon will work. HTTP 503.
	ErrNotReady = errors.New("not ready")
	// ErrFunction: the function itself failed (handler raised, crashed,
	// timed out, ran out of memory). HTTP 502.
	ErrFunction = errors.New("function error")
	// ErrProtocol: an instance broke the control-channel protocol (bad
	// magic, version or type, an over-long frame, an answer for another
	// invocation). The instance is destroyed. HTTP 502, type
	// "ProtocolError"; the message names the violation.
	ErrProtocol = errors.New("agent protocol error")
	// ErrNotSupported: the kernel, the machine or the process lacks what
	// an operation needs (a multi-threaded runtime cannot be forked or
	// checkpointed). HTTP 501.
	ErrNotSupported = errors.New("not supported on this system")
)
