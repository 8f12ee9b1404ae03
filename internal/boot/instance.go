package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox"
	"github.com/catalyzer/catalyzer/internal/timing"
)

// State is where an instance is in its life.
//
//	Ready --Invoke--> Busy --result--> Ready
//	  any --Destroy or death--> Dead
type State int

const (
	StateReady State = iota
	StateBusy
	StateDead
)

func (s State) String() string {
	switch s {
	case StateReady:
		return "ready"
	case StateBusy:
		return "busy"
	case StateDead:
		return "dead"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// ErrInstanceDead is returned by Invoke on an instance that has died or
// been destroyed.
var ErrInstanceDead = errors.New("instance is dead")

// Instance is one booted sandbox running one function, serving invocations
// one at a time over its control channel.
type Instance struct {
	ID       string
	Mode     Mode
	Function string
	// BootStart is the CLOCK_MONOTONIC time (ns) the boot began; with a
	// result's EntryNs it gives start-to-handler-entry.
	BootStart int64
	// Phases are the boot's measured steps, in order.
	Phases []timing.Phase

	sb     *sandbox.Sandbox
	conn   *agent.Conn
	stdout *tail
	stderr *tail
	limitB int64

	// afterFirst, if set, runs (in the background) after the first
	// successful invocation.
	afterFirst func()

	mu    sync.Mutex
	state State
	exit  *sandbox.Exit
	dead  chan struct{}
	once  sync.Once
}

func newInstance(id string, mode Mode, fn Function, start int64, phases []timing.Phase, sb *sandbox.Sandbox, conn *agent.Conn, stdout, stderr *tail) *Instance {
	i := &Instance{
		ID: id, Mode: mode, Function: fn.Name, BootStart: start, Phases: phases,
		sb: sb, conn: conn, stdout: stdout, stderr: stderr,
		limitB: int64(fn.MemoryMB) << 20,
		dead:   make(chan struct{}),
	}
	go i.monitor()
	return i
}

// monitor records the sandbox's exit and marks the instance dead.
func (i *Instance) monitor() {
	ex, err := i.sb.Wait()
	i.mu.Lock()
	if err == nil {
		i.exit = &ex
	}
	i.state = StateDead
	i.mu.Unlock()
	close(i.dead)
}

// Pid is the host PID of the instance's process.
func (i *Instance) Pid() int { return i.sb.Pid() }

// State reports the instance's current state.
func (i *Instance) State() State {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.state
}

// Dead is closed when the instance's process has exited.
func (i *Instance) Dead() <-chan struct{} { return i.dead }

// Invoke runs the handler once. A handler error is an *agent.FunctionError;
// when ctx ends first the instance is killed (its state is unknown) and
// the error says it timed out. An instance that dies during the call
// reports how it died (exit code, signal, out of memory).
func (i *Instance) Invoke(ctx context.Context, id uint64, event json.RawMessage, deadline time.Time) (agent.Result, error) {
	if st, ok := i.transition(StateReady, StateBusy); !ok {
		if st == StateDead {
			return agent.Result{}, fmt.Errorf("invoke %s: %w", i.ID, ErrInstanceDead)
		}
		return agent.Result{}, fmt.Errorf("invoke %s: instance is %s, not ready: %w", i.ID, st, errdefs.ErrConflict)
	}

	var dms int64
	if !deadline.IsZero() {
		dms = max(time.Until(deadline).Milliseconds(), 1)
	}
	res, err := i.conn.Invoke(ctx, agent.Invoke{ID: strconv.FormatUint(id, 10), Event: event, DeadlineMS: dms})
	if err != nil {
		var fe *agent.FunctionError
		if errors.As(err, &fe) {
			i.transition(StateBusy, StateReady)
			return res, err
		}
		// Timeout, broken channel or death: the instance is not reusable.
		if ctx.Err() != nil {
			i.Destroy()
			return res, &agent.FunctionError{Type: "TimeoutError", Message: fmt.Sprintf("function timed out: %v", context.Cause(ctx))}
		}
		if errors.Is(err, agent.ErrProtocol) {
			// The instance spoke garbage: it goes, and the violation
			// (not how it died once killed) is the answer.
			i.Destroy()
			return res, fmt.Errorf("instance %s destroyed: %w", i.ID, err)
		}
		return res, i.deathError(err)
	}
	i.transition(StateBusy, StateReady)
	if f := i.afterFirst; f != nil {
		i.afterFirst = nil
		go f()
	}
	return res, nil
}

// transition moves i from state from to state to, the only moves the
// diagram allows besides death (monitor): it changes nothing and reports
// the state i is in when that is not from (a busy instance that died
// stays dead).
func (i *Instance) transition(from, to State) (State, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.state != from {
		return i.state, false
	}
	i.state = to
	return to, true
}

// deathError waits briefly for the process to be reaped and describes how
// it died, as a function error: it is the function's fault, not ours.
func (i *Instance) deathError(cause error) error {
	select {
	case <-i.dead:
	case <-time.After(2 * time.Second):
		i.Destroy()
		<-i.dead
	}
	i.mu.Lock()
	ex := i.exit
	i.mu.Unlock()
	i.Destroy()
	fe := &agent.FunctionError{Type: "RuntimeExit", Stderr: i.stderr.String()}
	switch {
	case ex == nil:
		fe.Message = fmt.Sprintf("instance lost: %v", cause)
	case ex.OOMKilled:
		fe.Type = "OutOfMemory"
		fe.Message = fmt.Sprintf("instance was killed: out of memory (limit %d MiB)", i.limitB>>20)
	case ex.Signal != 0:
		fe.Message = fmt.Sprintf("instance was killed by signal %v", ex.Signal)
	default:
		fe.Message = fmt.Sprintf("instance exited with code %d", ex.Code)
	}
	return fe
}

// Destroy kills the instance and releases everything it holds. Idempotent.
func (i *Instance) Destroy() error {
	var err error
	i.once.Do(func() {
		i.conn.Close()
		err = i.sb.Destroy()
		<-i.dead
	})
	return err
}

// tail keeps the last n bytes written to it: an instance's own
// stdout/stderr (outside any invocation) for crash reports.
type tail struct {
	mu  sync.Mutex
	n   int
	buf []byte
}

func newTail(n int) *tail { return &tail{n: n} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.n:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// instanceIO is a new instance's I/O: its control channel and its stdout
// and stderr pipes. The daemon's pipe ends are drained into tails (the
// last bytes, for crash reports).
type instanceIO struct {
	parent            net.Conn // the daemon's end of the control channel
	child, outW, errW *os.File // the instance's ends: its fds 3, 1, 2
	outR, errR        *os.File
	stdout, stderr    *tail
}

func newInstanceIO() (*instanceIO, error) {
	io := &instanceIO{stdout: newTail(4096), stderr: newTail(4096)}
	var err error
	if io.parent, io.child, err = ControlPair(); err != nil {
		return nil, err
	}
	if io.outR, io.outW, err = drainPipe(io.stdout); err != nil {
		io.close()
		return nil, err
	}
	if io.errR, io.errW, err = drainPipe(io.stderr); err != nil {
		io.close()
		return nil, err
	}
	return io, nil
}

// closeChildEnds closes our copies of the instance's ends, once the
// instance (or its restorer, or the template passing them on) has its own.
func (io *instanceIO) closeChildEnds() {
	for _, f := range []*os.File{io.child, io.outW, io.errW} {
		if f != nil {
			f.Close()
		}
	}
}

// close closes everything (a boot that failed).
func (io *instanceIO) close() {
	io.closeChildEnds()
	if io.parent != nil {
		io.parent.Close()
	}
	for _, f := range []*os.File{io.outR, io.errR} {
		if f != nil {
			f.Close()
		}
	}
}
