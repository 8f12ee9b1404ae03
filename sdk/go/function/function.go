// Package function is the Go SDK for native Catalyzer functions. A native
// function is an executable that calls Start with its handler; Start speaks
// the control protocol (docs/PROTOCOL.md) on the fd named by
// CATALYZER_CONTROL_FD (default 3):
//
//	func main() {
//		function.Start(func(ctx context.Context, event json.RawMessage) (any, error) {
//			return map[string]string{"hello": "world"}, nil
//		})
//	}
//
// Per invocation:
//   - ctx carries the invocation's deadline (Invoke.deadline_ms; none when
//     0), its id (InvocationID) and the function name (FunctionName). The
//     SDK does not stop a handler that ignores ctx; the daemon kills the
//     instance when the deadline passes.
//   - fds 1 and 2 are redirected to memfds for the duration of the call, so
//     fmt.Print, os.Stdout, log (to stderr) and cgo code are all captured,
//     each bounded by the init's output_limit. Goroutines that outlive the
//     call write to the real fds again.
//   - The return value is encoded with encoding/json; if that fails the
//     error type is "SerializationError". A returned error becomes an error
//     frame whose type is the error's Go type (fmt's %T, e.g.
//     "*errors.errorString"); a panic becomes type "panic" with the stack
//     as the trace. The instance keeps serving after either.
//
// Forked (the instance is a clone of a template): math/rand's global source
// is reseeded from crypto/rand. Since Go 1.24 rand.Seed is a no-op unless
// GODEBUG has randseednop=0, so the SDK sets that (appended to any GODEBUG
// the process has; the runtime's internal/godebug sees os.Setenv), seeds,
// and puts GODEBUG back as it was; math/rand's top-level functions then
// draw from a locked source seeded per clone. crypto/rand reads the kernel
// (getrandom; its vDSO state is wiped on fork by the kernel): nothing to
// reseed. Known gap: the runtime's per-thread ChaCha8 state behind
// math/rand/v2's global functions (and behind map iteration order, select
// and the scheduler) is seeded once at process start and Go offers no way
// to reseed it, so clones of one template draw the same math/rand/v2
// sequence. Use crypto/rand, math/rand, or a math/rand/v2 generator you
// seed in your handler after Forked, where clones must differ.
package function

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// Handler is a native function's entry point.
type Handler func(ctx context.Context, event json.RawMessage) (any, error)

// Start serves invocations until the daemon closes the control channel,
// then exits the process with code 0 (2 on a protocol error, after telling
// the daemon why). It never returns.
func Start(h Handler) {
	if err := Serve(h); err != nil {
		os.Exit(2)
	}
	os.Exit(0)
}

// Serve is Start without the exit: it returns nil on EOF of the control
// channel and the error otherwise.
func Serve(h Handler) error {
	fd := 3
	if s := os.Getenv("CATALYZER_CONTROL_FD"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return fmt.Errorf("CATALYZER_CONTROL_FD=%q: not a file descriptor", s)
		}
		fd = n
	}
	unix.CloseOnExec(fd) // not inherited by the handler's subprocesses
	s := &server{h: h, ctl: os.NewFile(uintptr(fd), "catalyzer-control"), limit: agent.DefaultOutputLimit}
	err := s.serve()
	if errors.Is(err, agent.ErrProtocol) {
		s.send(agent.TypeError, agent.ErrorMsg{Type: "ProtocolError", Message: err.Error()})
	}
	return err
}

type ctxKey int

const (
	keyID ctxKey = iota
	keyFunction
	keyServer
)

// InvocationID returns the id of the invocation ctx belongs to.
func InvocationID(ctx context.Context) string { s, _ := ctx.Value(keyID).(string); return s }

// FunctionName returns the function's name from the init message.
func FunctionName(ctx context.Context) string { s, _ := ctx.Value(keyFunction).(string); return s }

// Log sends message to the daemon as a log frame right away (out of band,
// not part of the captured stdout/stderr), cut to fit agent.MaxLogFrame.
func Log(ctx context.Context, message string) {
	s, ok := ctx.Value(keyServer).(*server)
	if !ok {
		return
	}
	l := agent.Log{ID: InvocationID(ctx), Message: message}
	for {
		f, err := agent.Encode(agent.TypeLog, l)
		if err == nil {
			s.wmu.Lock()
			agent.WriteFrame(s.ctl, f)
			s.wmu.Unlock()
			return
		}
		if !errors.Is(err, errdefs.ErrTooLarge) || l.Message == "" {
			return
		}
		l.Message = l.Message[:len(l.Message)/2]
	}
}

type server struct {
	h        Handler
	ctl      *os.File
	wmu      sync.Mutex // frames may be sent by Log from any goroutine
	function string
	limit    int
	capture  *capture
}

func (s *server) send(t agent.Type, m any) error {
	f, err := agent.Encode(t, m)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return agent.WriteFrame(s.ctl, f)
}

func (s *server) ready() error {
	return s.send(agent.TypeReady, agent.Ready{Version: agent.ProtocolVersion, PID: os.Getpid(), ReadyNS: agent.Monotonic()})
}

func (s *server) serve() error {
	inited := false
	for {
		f, err := agent.ReadFrame(s.ctl)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch f.Type {
		case agent.TypeInit:
			var m agent.Init
			if err := agent.Decode(f, agent.TypeInit, &m); err != nil {
				return err
			}
			if inited {
				return fmt.Errorf("%w: second init", agent.ErrProtocol)
			}
			if m.Version != agent.ProtocolVersion {
				return fmt.Errorf("%w: init for protocol version %d, agent speaks version %d", agent.ErrProtocol, m.Version, agent.ProtocolVersion)
			}
			s.function = m.Function
			if m.OutputLimit > 0 {
				s.limit = m.OutputLimit
			}
			inited = true
			if err := s.ready(); err != nil {
				return err
			}
		case agent.TypeInvoke:
			var m agent.Invoke
			if err := agent.Decode(f, agent.TypeInvoke, &m); err != nil {
				return err
			}
			if !inited {
				return fmt.Errorf("%w: invoke before a successful init", agent.ErrProtocol)
			}
			if err := s.invoke(m); err != nil {
				return err
			}
		case agent.TypeForked:
			reseedMathRand()
			if err := s.ready(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: unexpected %s frame", agent.ErrProtocol, f.Type)
		}
	}
}

func (s *server) invoke(m agent.Invoke) error {
	ctx := context.WithValue(context.Background(), keyID, m.ID)
	ctx = context.WithValue(ctx, keyFunction, s.function)
	ctx = context.WithValue(ctx, keyServer, s)
	cancel := context.CancelFunc(func() {})
	if m.DeadlineMS > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(m.DeadlineMS)*time.Millisecond)
	}
	defer cancel()

	if s.capture == nil {
		// Made at the first call, not at init: a template must hold no
		// memfd (its forks would share it) and no copy of its stdout
		// (its forks would write to the template's).
		s.capture = &capture{}
	}
	if err := s.capture.start(); err != nil {
		return s.send(agent.TypeError, agent.ErrorMsg{ID: m.ID, Type: "CaptureError", Message: err.Error()})
	}
	entry := agent.Monotonic()
	out, herr := call(ctx, s.h, m.Event)
	exit := agent.Monotonic()
	stdout, stderr, truncated := s.capture.stop(s.limit)

	if herr == nil {
		b, err := json.Marshal(out)
		if err == nil {
			r := agent.Result{ID: m.ID, Output: b, EntryNS: entry, ExitNS: exit, Stdout: stdout, Stderr: stderr, Truncated: truncated}
			f, err := agent.Encode(agent.TypeResult, r)
			if err != nil {
				herr = &callError{typ: "ResultTooLarge", msg: err.Error()}
			} else {
				s.wmu.Lock()
				defer s.wmu.Unlock()
				return agent.WriteFrame(s.ctl, f)
			}
		} else {
			herr = &callError{typ: "SerializationError", msg: "handler result is not JSON-serialisable: " + err.Error()}
		}
	}
	e := agent.ErrorMsg{ID: m.ID, Type: fmt.Sprintf("%T", herr), Message: herr.Error(), EntryNS: entry, ExitNS: exit, Stdout: stdout, Stderr: stderr, Truncated: truncated}
	if ce, ok := herr.(*callError); ok {
		e.Type, e.Message, e.Trace = ce.typ, ce.msg, ce.trace
	}
	return s.send(agent.TypeError, e)
}

// reseedMathRand gives math/rand's global source a seed of its own (see
// the package doc).
func reseedMathRand() {
	var b [8]byte
	cryptorand.Read(b[:]) // never fails (Go 1.24+): it crashes the process instead
	seedMathRand(int64(binary.LittleEndian.Uint64(b[:])))
}

// seedMathRand is rand.Seed(seed) with GODEBUG randseednop=0 for the call.
func seedMathRand(seed int64) {
	old, had := os.LookupEnv("GODEBUG")
	godebug := "randseednop=0"
	if old != "" {
		godebug = old + "," + godebug // the last setting of a key wins
	}
	os.Setenv("GODEBUG", godebug)
	//lint:ignore SA1019 rand.Seed is the only way to reseed math/rand's global source
	rand.Seed(seed)
	if had {
		os.Setenv("GODEBUG", old)
	} else {
		os.Unsetenv("GODEBUG")
	}
}

// callError is an error the SDK makes itself (panic, serialisation).
type callError struct{ typ, msg, trace string }

func (e *callError) Error() string { return e.msg }

func call(ctx context.Context, h Handler, event json.RawMessage) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, &callError{typ: "panic", msg: fmt.Sprint(r), trace: string(debug.Stack())}
		}
	}()
	return h(ctx, event)
}

// capture redirects fds 1 and 2 into memfds during a call.
type capture struct {
	saved [2]int // duplicates of the fds 1 and 2 of before the call
	files [2]int // memfds, made at the first call
	made  bool
}

func (c *capture) start() error {
	if !c.made {
		for i, name := range []string{"stdout", "stderr"} {
			m, err := unix.MemfdCreate("catalyzer-"+name, unix.MFD_CLOEXEC)
			if err != nil {
				return fmt.Errorf("memfd for %s: %w", name, err)
			}
			c.files[i] = m
		}
		c.made = true
	}
	for i, m := range c.files {
		saved, err := unix.FcntlInt(uintptr(i+1), unix.F_DUPFD_CLOEXEC, 10)
		if err == nil {
			c.saved[i] = saved
			if err = unix.Ftruncate(m, 0); err == nil {
				if _, err = unix.Seek(m, 0, io.SeekStart); err == nil {
					err = unix.Dup3(m, i+1, 0)
				}
			}
			if err != nil {
				unix.Close(saved)
			}
		}
		if err != nil {
			for k := range i { // put back what was redirected
				unix.Dup3(c.saved[k], k+1, 0)
				unix.Close(c.saved[k])
			}
			return fmt.Errorf("capture fd %d: %w", i+1, err)
		}
	}
	return nil
}

func (c *capture) stop(limit int) (stdout, stderr string, truncated bool) {
	var out [2]string
	for i, m := range c.files {
		unix.Dup3(c.saved[i], i+1, 0)
		unix.Close(c.saved[i])
		var st unix.Stat_t
		if unix.Fstat(m, &st) != nil {
			continue
		}
		n := int(st.Size)
		if n > limit {
			n, truncated = limit, true
		}
		buf := make([]byte, n)
		got, _ := unix.Pread(m, buf, 0)
		if got < 0 {
			got = 0
		}
		out[i] = string(buf[:got])
		unix.Ftruncate(m, 0)
	}
	return out[0], out[1], truncated
}
