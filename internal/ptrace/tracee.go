package ptrace

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// ErrMultiThreaded is wrapped by Seize's error for a process with more
// than one thread (errors.Is also matches errdefs.ErrNotSupported).
var ErrMultiThreaded = errors.New("multi-threaded process")

// MultiThreadedError is Seize's refusal of a multi-threaded process.
type MultiThreadedError struct{ Pid, Threads int }

func (e *MultiThreadedError) Error() string {
	return fmt.Sprintf("process %d has %d threads; seize them all (SeizeGroup) to fork or checkpoint it", e.Pid, e.Threads)
}

// Is matches ErrMultiThreaded and errdefs.ErrNotSupported.
func (e *MultiThreadedError) Is(target error) bool {
	return target == ErrMultiThreaded || target == errdefs.ErrNotSupported
}

// ErrExited is wrapped when the tracee exits or is killed while we wait
// for it to stop.
var ErrExited = errors.New("tracee exited")

// ErrState is wrapped when a call does not fit the tracee's state (running
// when it must be stopped, detached, inside a batch).
var ErrState = fmt.Errorf("ptrace: wrong tracee state: %w", errdefs.ErrConflict)

// Option configures Seize.
type Option func(*config)

type config struct{ opts int }

func setOpt(bit int, on bool) Option {
	return func(c *config) {
		if on {
			c.opts |= bit
		} else {
			c.opts &^= bit
		}
	}
}

// TraceClone auto-attaches threads/clones the tracee creates (default on).
func TraceClone(on bool) Option { return setOpt(unix.PTRACE_O_TRACECLONE, on) }

// TraceFork auto-attaches children from fork, vfork and clone(SIGCHLD)
// (default on). Turn it off for batches whose children must run freely.
func TraceFork(on bool) Option {
	return setOpt(unix.PTRACE_O_TRACEFORK|unix.PTRACE_O_TRACEVFORK, on)
}

// ExitKill kills the tracee if the tracer thread exits (default on).
func ExitKill(on bool) Option { return setOpt(unix.PTRACE_O_EXITKILL, on) }

// SuspendSeccomp suspends the tracee's seccomp filters while it is traced
// (PTRACE_O_SUSPEND_SECCOMP, default off): injected syscalls that its
// filter would deny (setns, mount, clone with namespace flags) then run,
// and auto-attached children inherit the suspension until they are
// detached, when the inherited filter applies again. The tracer needs
// CAP_SYS_ADMIN in the initial user namespace and a kernel built with
// CONFIG_CHECKPOINT_RESTORE.
func SuspendSeccomp(on bool) Option { return setOpt(unix.PTRACE_O_SUSPEND_SECCOMP, on) }

const defaultOpts = unix.PTRACE_O_TRACESYSGOOD | unix.PTRACE_O_TRACECLONE |
	unix.PTRACE_O_TRACEFORK | unix.PTRACE_O_TRACEVFORK | unix.PTRACE_O_EXITKILL

type state int

const (
	stateStopped state = iota
	stateRunning
	stateDetached
	stateExited
)

// Tracee is one traced thread: a single-threaded process (Seize), or one
// thread of a ThreadGroup (SeizeGroup). Its methods run on the Tracer's thread; they
// are not safe for concurrent use on one Tracee.
type Tracee struct {
	tr   *Tracer
	pid  int
	opts int
	mem  *os.File
	st   state
	// memShared: mem is another tracee's (a thread of the same process,
	// AdoptThread), closed by its owner.
	memShared bool

	// last stop seen by wait.
	last Stop
	// pending signals (bit n-1 for signal n) intercepted while we ran
	// injected code; re-raised on Detach.
	pending uint64

	// executor mapping (0 = not installed) and the vDSO syscall used to
	// bootstrap it.
	exec     uintptr
	vdsoSys  uintptr
	inBatch  *Regs // regs to restore when the running batch finishes
	children []int // pids reported by fork/clone events since last Exec

	roundTrips  atomic.Uint64
	ptraceCalls atomic.Uint64
}

// Pid is the tracee's pid (thread id).
func (t *Tracee) Pid() int { return t.pid }

// TracesClones reports whether threads the tracee creates are
// auto-attached and start stopped (TraceClone).
func (t *Tracee) TracesClones() bool { return t.opts&unix.PTRACE_O_TRACECLONE != 0 }

// Tracer is the tracer this tracee belongs to.
func (t *Tracee) Tracer() *Tracer { return t.tr }

// RoundTrips counts the stops this tracee reported to us (each one a
// resume-stop-wake cycle costing a few context switches; ~30 µs on a
// paravirtualized VM). Safe from any goroutine.
func (t *Tracee) RoundTrips() uint64 { return t.roundTrips.Load() }

// PtraceCalls counts the ptrace(2) requests made for this tracee.
func (t *Tracee) PtraceCalls() uint64 { return t.ptraceCalls.Load() }

// PendingSignals returns the signals intercepted while injected code ran;
// Detach re-raises them.
func (t *Tracee) PendingSignals() []unix.Signal {
	var s []unix.Signal
	for n := 1; n <= 64; n++ {
		if t.pending&(1<<(n-1)) != 0 {
			s = append(s, unix.Signal(n))
		}
	}
	return s
}

func (t *Tracee) ptrace(req int, addr, data uintptr) error {
	t.ptraceCalls.Add(1)
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(t.pid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// Threads counts the threads of pid from /proc/PID/task.
func Threads(pid int) (int, error) {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// Seize attaches to pid with PTRACE_SEIZE, interrupts it and waits for the
// stop. The process must be single-threaded (else a *MultiThreadedError).
func (tr *Tracer) Seize(pid int, opts ...Option) (*Tracee, error) {
	c := config{opts: defaultOpts}
	for _, o := range opts {
		o(&c)
	}
	c.opts |= unix.PTRACE_O_TRACESYSGOOD
	if n, err := Threads(pid); err != nil {
		return nil, fmt.Errorf("seize %d: %w", pid, err)
	} else if n > 1 {
		return nil, &MultiThreadedError{pid, n}
	}
	t := &Tracee{tr: tr, pid: pid, opts: c.opts, st: stateDetached}
	err := tr.Do(func() error {
		if err := t.ptrace(unix.PTRACE_SEIZE, 0, uintptr(c.opts)); err != nil {
			if err == unix.EPERM {
				return fmt.Errorf("seize %d: %w (needs CAP_SYS_PTRACE or a permissive yama ptrace_scope)", pid, err)
			}
			return fmt.Errorf("seize %d: %w", pid, err)
		}
		t.st = stateRunning
		if err := t.interrupt(); err != nil {
			t.ptrace(unix.PTRACE_DETACH, 0, 0)
			return err
		}
		// A thread may have been created between the count and the seize.
		if n, err := Threads(pid); err == nil && n > 1 {
			t.detach()
			return &MultiThreadedError{pid, n}
		}
		return t.openMem()
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Tracee) openMem() error {
	f, err := os.OpenFile("/proc/"+strconv.Itoa(t.pid)+"/mem", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open memory of %d: %w", t.pid, err)
	}
	t.mem = f
	return nil
}

// interrupt stops a running tracee (PTRACE_INTERRUPT) and waits for the
// interrupt or group stop, intercepting signals that arrive first.
func (t *Tracee) interrupt() error {
	if err := t.ptrace(unix.PTRACE_INTERRUPT, 0, 0); err != nil {
		return fmt.Errorf("interrupt %d: %w", t.pid, err)
	}
	for {
		s, err := t.wait()
		if err != nil {
			return err
		}
		switch s.Kind {
		case StopInterrupt, StopGroup:
			return nil
		case StopSignal:
			t.pending |= 1 << (s.Signal - 1)
		}
		// Anything else (a signal, a syscall or event stop that won the
		// race): resume; the interrupt stays pending.
		if err := t.resume(unix.PTRACE_CONT, 0); err != nil {
			return err
		}
	}
}

// Interrupt stops a running tracee.
func (t *Tracee) Interrupt() error {
	return t.tr.Do(func() error {
		if t.st != stateRunning {
			return fmt.Errorf("interrupt %d: not running: %w", t.pid, ErrState)
		}
		return t.interrupt()
	})
}

func (t *Tracee) resume(req int, sig unix.Signal) error {
	if err := t.ptrace(req, 0, uintptr(sig)); err != nil {
		return fmt.Errorf("resume %d: %w", t.pid, err)
	}
	t.st = stateRunning
	return nil
}

// Cont resumes the tracee (PTRACE_CONT), delivering sig if nonzero and the
// tracee is in a signal-delivery stop. Call Wait for the next stop.
func (t *Tracee) Cont(sig unix.Signal) error {
	return t.tr.Do(func() error {
		if err := t.stopped("cont"); err != nil {
			return err
		}
		return t.resume(unix.PTRACE_CONT, sig)
	})
}

// ContSyscall resumes the tracee until the next syscall entry or exit.
func (t *Tracee) ContSyscall(sig unix.Signal) error {
	return t.tr.Do(func() error {
		if err := t.stopped("cont"); err != nil {
			return err
		}
		return t.resume(unix.PTRACE_SYSCALL, sig)
	})
}

func (t *Tracee) stopped(op string) error {
	switch t.st {
	case stateStopped:
		return nil
	case stateDetached:
		return fmt.Errorf("%s %d: detached: %w", op, t.pid, ErrState)
	case stateExited:
		return fmt.Errorf("%s %d: %w", op, t.pid, ErrExited)
	}
	return fmt.Errorf("%s %d: running: %w", op, t.pid, ErrState)
}

// Detach re-raises intercepted signals and detaches; the tracee resumes.
// A running tracee is interrupted first. The memory file is closed.
func (t *Tracee) Detach() error {
	return t.tr.Do(func() error {
		switch t.st {
		case stateDetached:
			return nil
		case stateExited:
			t.closeMem()
			return nil
		case stateRunning:
			if err := t.interrupt(); err != nil {
				return err
			}
		}
		if t.inBatch != nil {
			return fmt.Errorf("detach %d: inside a batch (paused); Resume it first: %w", t.pid, ErrState)
		}
		return t.detach()
	})
}

func (t *Tracee) detach() error {
	for _, s := range t.PendingSignals() {
		unix.Tgkill(t.pid, t.pid, s)
	}
	t.pending = 0
	err := t.ptrace(unix.PTRACE_DETACH, 0, 0)
	t.st = stateDetached
	t.closeMem()
	if err != nil {
		return fmt.Errorf("detach %d: %w", t.pid, err)
	}
	return nil
}

func (t *Tracee) closeMem() {
	if t.memShared {
		t.mem = nil
		return
	}
	if t.mem != nil {
		t.mem.Close()
		t.mem = nil
	}
}

// Adopt takes over a child that the kernel auto-attached (TraceClone or
// TraceFork) when this tracee created it: it waits for the child's initial
// stop and returns it as its own Tracee, which shares this one's tracer,
// options and executor mapping (the child has a copy of it).
func (t *Tracee) Adopt(pid int) (*Tracee, error) {
	return t.adopt(pid, false)
}

// adopt is Adopt; thread (a thread t created in its own process) shares
// t's memory file rather than opening its own.
func (t *Tracee) adopt(pid int, thread bool) (*Tracee, error) {
	c := &Tracee{tr: t.tr, pid: pid, opts: t.opts, st: stateRunning, exec: t.exec, vdsoSys: t.vdsoSys}
	err := t.tr.Do(func() error {
		if err := c.waitStart(); err != nil {
			return err
		}
		if thread {
			c.mem, c.memShared = t.mem, true
			return nil
		}
		return c.openMem()
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// waitStart waits for an auto-attached child's initial stop.
func (t *Tracee) waitStart() error {
	for {
		s, err := t.wait()
		if err != nil {
			return fmt.Errorf("adopt %d: %w", t.pid, err)
		}
		if s.Kind == StopInterrupt || s.Kind == StopGroup {
			return nil
		}
		if s.Kind == StopSignal {
			t.pending |= 1 << (s.Signal - 1)
		}
		if err := t.resume(unix.PTRACE_CONT, 0); err != nil {
			return err
		}
	}
}

// Children returns (and forgets) the pids that fork/clone events reported
// during the last Exec, Resume or Syscall.
func (t *Tracee) Children() []int {
	c := t.children
	t.children = nil
	return c
}
