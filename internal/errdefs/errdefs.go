// Package errdefs holds the few error values shared by every layer, and
// the one table (Table) that says what each means to an API user: its
// HTTP status and its type, the name the error body and the
// catalyzer_errors_total metric both give it.
//
// Libraries wrap one of these (fmt.Errorf("deploy %s: %w", name, ErrInvalid))
// so that the API maps an error to a status code, and the platform to a
// metric label, without knowing where it came from: both call Classify.
// Test with errors.Is.
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
	// ErrUnavailable: a capacity limit is reached (a function's
	// max_instances are all busy, serve --max-functions functions are
	// deployed, the uid ranges are used up); retry later or raise the
	// limit. HTTP 429.
	ErrUnavailable = errors.New("capacity exhausted")
	// ErrNotReady: something the request needs is being (re)built (a fork
	// template); retrying soon will work. HTTP 503.
	ErrNotReady = errors.New("not ready")
	// ErrShutdown: the daemon is shutting down (the platform, or the env
	// pool a boot would take from, is closed); retry against a daemon
	// that runs. HTTP 503.
	ErrShutdown = errors.New("shutting down")
	// ErrFunction: the function itself failed (handler raised, crashed,
	// timed out, ran out of memory). HTTP 502.
	ErrFunction = errors.New("function error")
	// ErrProtocol: an instance broke the control-channel protocol (bad
	// magic, version or type, an over-long frame, an answer for another
	// invocation). The instance is destroyed. HTTP 502, type
	// "ProtocolError"; the message names the violation.
	ErrProtocol = errors.New("agent protocol error")
	// ErrNotSupported: the kernel, the machine or the process lacks what
	// an operation needs (a process holding a socket or a memfd made at
	// init cannot be forked or checkpointed). HTTP 501.
	ErrNotSupported = errors.New("not supported")
)

// Kind is what an error means to an API user.
type Kind struct {
	// Err is the value an error wraps to be of this kind (nil for
	// Internal).
	Err error
	// Status is the HTTP status the API answers. (A number, not a
	// net/http constant: this package is linked into the native
	// function SDK, which must not carry net/http.)
	Status int
	// Type is the "type" of the API's error body and the "type" label of
	// the catalyzer_errors_total metric.
	Type string
}

// Table has one row for every value of this package, in the order
// Classify tries them: the first value an error wraps decides (an
// ErrProtocol error is the function's fault too, but is named as what it
// is, so it comes before ErrFunction).
var Table = []Kind{
	{ErrInvalid, 400, "InvalidRequest"},
	{ErrProtocol, 502, "ProtocolError"},
	{ErrUnauthorized, 401, "Unauthorized"},
	{ErrForbidden, 403, "Forbidden"},
	{ErrNotFound, 404, "NotFound"},
	{ErrConflict, 409, "Conflict"},
	{ErrTooLarge, 413, "TooLarge"},
	{ErrUnavailable, 429, "TooManyRequests"},
	{ErrNotReady, 503, "NotReady"},
	{ErrShutdown, 503, "ShuttingDown"},
	{ErrNotSupported, 501, "NotSupported"},
	{ErrFunction, 502, "FunctionError"},
}

// Internal is the kind of an error that wraps none of the values: a fault
// of the daemon. HTTP 500.
var Internal = Kind{Status: 500, Type: "InternalError"}

// Typed is an error that names its own type: agent.FunctionError carries
// the function's exception class ("ValueError", "TimeoutError").
type Typed interface {
	error
	ErrorType() string
}

// Classify returns err's kind: the first row of Table whose value err
// wraps, else Internal. When err's chain holds a Typed error with a
// non-empty type, that type replaces the row's (the status stays the
// row's).
func Classify(err error) Kind {
	k := Internal
	for _, r := range Table {
		if errors.Is(err, r.Err) {
			k = r
			break
		}
	}
	var t Typed
	if errors.As(err, &t) {
		if typ := t.ErrorType(); typ != "" {
			k.Type = typ
		}
	}
	return k
}
