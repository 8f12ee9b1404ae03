package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Bounds on the log frames one request keeps: what an instance sends on
// its control channel must not grow the daemon's memory. Past them, log
// frames are still read (and checked) but dropped, and the answer says
// LogsTruncated.
const (
	MaxLogs     = 1000     // log frames kept per request
	MaxLogBytes = 64 << 10 // bytes of log messages kept per request, like stdout
)

// Conn is the daemon's end of a control channel. It carries one request at
// a time (calls are serialised).
type Conn struct {
	mu     sync.Mutex
	c      net.Conn
	broken error // set once the channel is unusable; returned by every later call
}

// NewConn wraps c, typically one end of a socketpair whose other end is
// the instance's fd 3.
func NewConn(c net.Conn) *Conn { return &Conn{c: c} }

// Close closes the channel; an agent exits with code 0 when it sees EOF.
func (c *Conn) Close() error { return c.c.Close() }

// Init sends m (Version defaults to ProtocolVersion) and waits for Ready. A
// handler that cannot be loaded is a *FunctionError.
func (c *Conn) Init(ctx context.Context, m Init) (Ready, error) {
	if m.Version == 0 {
		m.Version = ProtocolVersion
	}
	return c.ready(ctx, TypeInit, m)
}

// Forked tells a cloned agent to reseed its RNGs and waits for its Ready.
func (c *Conn) Forked(ctx context.Context) (Ready, error) {
	return c.ready(ctx, TypeForked, Forked{Version: ProtocolVersion})
}

func (c *Conn) ready(ctx context.Context, t Type, m any) (Ready, error) {
	var r Ready
	logs, cut, err := c.roundTrip(ctx, t, m, func(f Frame) (bool, error) {
		switch f.Type {
		case TypeReady:
			if err := Decode(f, TypeReady, &r); err != nil {
				return false, err
			}
			if r.Version != ProtocolVersion {
				return false, protoErrorf("agent is ready for protocol version %d, this side speaks version %d", r.Version, ProtocolVersion)
			}
			return true, nil
		case TypeError:
			return false, decodeFunctionError(f, "")
		}
		return false, protoErrorf("got %s frame in answer to %s", f.Type, t)
	})
	r.Logs, r.LogsTruncated = logs, cut
	if err != nil {
		var fe *FunctionError
		if errors.As(err, &fe) {
			fe.Logs, fe.LogsTruncated = logs, cut
		}
		return Ready{}, fmt.Errorf("%s: %w", t, err)
	}
	return r, nil
}

// Invoke runs one call. A handler error is a *FunctionError. When ctx is
// done the call is abandoned and ctx.Err() returned: the Conn is then
// unusable and the caller must kill the instance.
func (c *Conn) Invoke(ctx context.Context, m Invoke) (Result, error) {
	if len(m.Event) == 0 {
		m.Event = []byte("null")
	}
	var r Result
	logs, cut, err := c.roundTrip(ctx, TypeInvoke, m, func(f Frame) (bool, error) {
		switch f.Type {
		case TypeResult:
			if err := Decode(f, TypeResult, &r); err != nil {
				return false, err
			}
			if r.ID != m.ID {
				return false, protoErrorf("result for invocation %q, want %q", r.ID, m.ID)
			}
			return true, nil
		case TypeError:
			return false, decodeFunctionError(f, m.ID)
		}
		return false, protoErrorf("got %s frame in answer to invoke", f.Type)
	})
	r.Logs, r.LogsTruncated = logs, cut
	if err != nil {
		var fe *FunctionError
		if errors.As(err, &fe) {
			fe.Logs, fe.LogsTruncated = logs, cut
		}
		return Result{}, err
	}
	return r, nil
}

func decodeFunctionError(f Frame, id string) error {
	var e ErrorMsg
	if err := Decode(f, TypeError, &e); err != nil {
		return err
	}
	if e.ID != "" && e.ID != id {
		return protoErrorf("error for invocation %q, want %q", e.ID, id)
	}
	if e.Type == "ProtocolError" {
		return protoErrorf("agent refused the request: %s", e.Message)
	}
	return &FunctionError{Type: e.Type, Message: e.Message, Trace: e.Trace, Stdout: e.Stdout, Stderr: e.Stderr}
}

// roundTrip sends one request and reads frames until accept says done or
// fails. Log frames are collected and returned, at most MaxLogs of them
// and MaxLogBytes of messages; cut says some were dropped. A
// *FunctionError leaves the Conn usable; any other failure breaks it.
func (c *Conn) roundTrip(ctx context.Context, t Type, m any, accept func(Frame) (bool, error)) (logs []Log, cut bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil, false, c.broken
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	f, err := Encode(t, m)
	if err != nil {
		return nil, false, err // nothing was sent: the Conn stays usable
	}
	stop := context.AfterFunc(ctx, func() {
		// Unblock a Read or Write in progress.
		c.c.SetDeadline(time.Unix(1, 0))
	})
	defer func() {
		if !stop() && ctx.Err() != nil {
			err = ctx.Err()
		}
		var fe *FunctionError
		if err != nil && !errors.As(err, &fe) {
			c.broken = fmt.Errorf("control channel unusable after an earlier failure: %w", err)
		}
	}()
	if err := WriteFrame(c.c, f); err != nil {
		return nil, false, err
	}
	kept := 0 // bytes of messages in logs
	for {
		f, err := ReadFrame(c.c)
		if err != nil {
			return logs, cut, err
		}
		if f.Type == TypeLog {
			var l Log
			if err := Decode(f, TypeLog, &l); err != nil {
				return logs, cut, err
			}
			if len(logs) >= MaxLogs || kept >= MaxLogBytes {
				cut = true
				continue
			}
			if room := MaxLogBytes - kept; len(l.Message) > room {
				l.Message, cut = l.Message[:room], true
			}
			kept += len(l.Message)
			logs = append(logs, l)
			continue
		}
		done, err := accept(f)
		if err != nil || done {
			return logs, cut, err
		}
	}
}
