package ptrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
)

// RSeq is a thread's rseq registration (struct
// ptrace_rseq_configuration).
type RSeq struct {
	Ptr       uint64
	Size      uint32
	Signature uint32
	Flags     uint32
	_         uint32
}

// ThreadState is what a thread has of its own, beyond the memory, files
// and signal handlers its process shares: what a checkpoint records and
// what re-creating the thread must give back.
type ThreadState struct {
	TID        int    // host tid
	NSTID      int    // tid in the process's own (innermost) PID namespace: what set_tid re-creates
	Regs       Regs   // normalised (NormalizeRestart): resumes by re-issuing an interrupted syscall
	XState     []byte // FPU, SSE, AVX... (PTRACE_GETREGSET NT_X86_XSTATE)
	SigMask    uint64 // blocked signals, bit n-1 for signal n
	AltStack   [StackTSize]byte
	TIDAddress uint64 // clear_child_tid (set_tid_address)
	Robust     [2]uint64
	RSeq       RSeq
	Comm       string // thread name (PR_SET_NAME), at most 15 bytes
	Caps       ThreadCaps
	Seccomp    int // seccomp mode: 0 none, 1 strict, 2 filter (the filters themselves are not read)
}

// ThreadCaps are a thread's capability sets, bit n for capability n
// (capabilities are per thread in Linux).
type ThreadCaps struct {
	Inheritable, Permitted, Effective, Bounding, Ambient uint64
}

// AllCaps limits nothing (ThreadCaps.Within).
var AllCaps = ThreadCaps{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}

// Within is c limited to l: each set intersected, the effective set kept
// within the permitted one and the ambient set within the permitted and
// inheritable ones (the kernel's rules).
func (c ThreadCaps) Within(l ThreadCaps) ThreadCaps {
	c.Inheritable &= l.Inheritable
	c.Permitted &= l.Permitted
	c.Effective &= l.Effective & c.Permitted
	c.Bounding &= l.Bounding
	c.Ambient &= l.Ambient & c.Permitted & c.Inheritable
	return c
}

// ThreadState reads the stopped thread's own state: registers and
// extended state and its rseq registration through ptrace, its signal
// mask, alternate signal stack, clear_child_tid address and robust futex
// list by one injected batch (which installs the executor if needed), its
// name, capabilities, seccomp mode and namespace tid from procfs. t is a
// single-threaded process or the leader of its group (ThreadGroup.States
// reads the others).
func (t *Tracee) ThreadState() (ThreadState, error) { return t.threadState(t.pid) }

func (t *Tracee) threadState(pid int) (ThreadState, error) {
	st := ThreadState{TID: t.pid}
	var err error
	if st.Regs, err = t.Regs(); err != nil {
		return st, err
	}
	NormalizeRestart(&st.Regs)
	if st.XState, err = t.XState(); err != nil {
		return st, err
	}
	b := NewBatch()
	ss := b.Space(StackTSize)
	b.Add(unix.SYS_SIGALTSTACK, Lit(0), ss)
	tid := b.Space(8)
	b.Add(unix.SYS_PRCTL, Lit(unix.PR_GET_TID_ADDRESS), tid)
	rh, rl := b.Space(8), b.Space(8)
	b.Add(unix.SYS_GET_ROBUST_LIST, Lit(0), rh, rl)
	mask := b.Space(8)
	b.Add(unix.SYS_RT_SIGPROCMASK, Lit(unix.SIG_BLOCK), Lit(0), mask, Lit(8))
	res, err := t.Exec(b)
	if err != nil {
		return st, fmt.Errorf("thread %d: query batch: %w", t.pid, err)
	}
	le := binary.LittleEndian
	copy(st.AltStack[:], res.Data(ss, StackTSize))
	st.TIDAddress = le.Uint64(res.Data(tid, 8))
	st.Robust = [2]uint64{le.Uint64(res.Data(rh, 8)), le.Uint64(res.Data(rl, 8))}
	st.SigMask = le.Uint64(res.Data(mask, 8))
	err = t.tr.Do(func() error {
		return t.ptracePtr(unix.PTRACE_GET_RSEQ_CONFIGURATION, unsafe.Sizeof(st.RSeq), unsafe.Pointer(&st.RSeq))
	})
	if err != nil {
		return st, fmt.Errorf("thread %d: rseq configuration: %w", t.pid, err)
	}
	ti, err := procfs.Thread(pid, t.pid)
	if err != nil {
		return st, fmt.Errorf("thread %d: %w", t.pid, err)
	}
	st.NSTID, st.Comm, st.Seccomp = ti.NSTID, ti.Comm, ti.Seccomp
	st.Caps = ThreadCaps{Inheritable: ti.CapInh, Permitted: ti.CapPrm, Effective: ti.CapEff, Bounding: ti.CapBnd, Ambient: ti.CapAmb}
	return st, nil
}

// SeccompError refuses a thread whose seccomp mode is not its main
// thread's: filters are per thread, and a re-created thread inherits its
// creator's (errors.Is errdefs.ErrNotSupported).
type SeccompError struct{ TID, Mode, MainMode int }

func (e *SeccompError) Error() string {
	return fmt.Sprintf("thread %d has seccomp mode %d, its main thread %d: threads under different seccomp filters cannot be re-created", e.TID, e.Mode, e.MainMode)
}

// Is matches errdefs.ErrNotSupported.
func (e *SeccompError) Is(target error) bool { return target == errdefs.ErrNotSupported }

// SameSeccomp checks that every thread of states (the main thread's
// first, as ThreadGroup.States returns them) has the main thread's seccomp
// mode, and returns a *SeccompError for the first that has not. Equal
// modes do not prove equal filters: a re-created thread gets its
// creator's.
func SameSeccomp(states []ThreadState) error {
	for _, st := range states[1:] {
		if st.Seccomp != states[0].Seccomp {
			return &SeccompError{TID: st.TID, Mode: st.Seccomp, MainMode: states[0].Seccomp}
		}
	}
	return nil
}

// ThreadGroup is every thread of a process, seized and stopped: where a
// multi-threaded fork or checkpoint starts. Threads[0] is the leader
// (tid == pid); the others share its executor mapping.
type ThreadGroup struct {
	Threads []*Tracee
}

// SeizeGroup seizes every thread of pid and stops each, threads created
// meanwhile too: it rescans /proc/PID/task until a scan finds no thread
// it has not seized (a seized, stopped thread creates none). On error
// every thread seized so far is detached.
func (tr *Tracer) SeizeGroup(pid int, opts ...Option) (*ThreadGroup, error) {
	c := config{opts: defaultOpts}
	for _, o := range opts {
		o(&c)
	}
	c.opts |= unix.PTRACE_O_TRACESYSGOOD
	g := &ThreadGroup{}
	seized := map[int]bool{}
	fail := func(err error) (*ThreadGroup, error) {
		g.Detach()
		return nil, fmt.Errorf("seize %d: %w", pid, err)
	}
	for round := 0; ; round++ {
		if round == 100 {
			return fail(errors.New("threads keep appearing"))
		}
		tids, err := procfs.Threads(pid)
		if err != nil {
			return fail(err)
		}
		slices.Sort(tids) // the leader (tid == pid, the lowest) first
		fresh := 0
		for _, tid := range tids {
			if seized[tid] {
				continue
			}
			t, err := tr.seizeThread(pid, tid, c.opts)
			if errors.Is(err, unix.ESRCH) || errors.Is(err, fs.ErrNotExist) {
				continue // it exited meanwhile
			}
			if err != nil {
				return fail(err)
			}
			seized[tid] = true
			fresh++
			if tid == pid {
				g.Threads = append([]*Tracee{t}, g.Threads...)
			} else {
				g.Threads = append(g.Threads, t)
			}
		}
		if fresh == 0 {
			break
		}
	}
	if len(g.Threads) == 0 || g.Threads[0].pid != pid {
		return fail(fmt.Errorf("no leader thread %d", pid))
	}
	return g, nil
}

// seizeThread seizes and stops one thread of process pid.
func (tr *Tracer) seizeThread(pid, tid int, opts int) (*Tracee, error) {
	t := &Tracee{tr: tr, pid: tid, opts: opts, st: stateDetached}
	err := tr.Do(func() error {
		if err := t.ptrace(unix.PTRACE_SEIZE, 0, uintptr(opts)); err != nil {
			return fmt.Errorf("seize thread %d: %w", tid, err)
		}
		t.st = stateRunning
		if err := t.interrupt(); err != nil {
			t.ptrace(unix.PTRACE_DETACH, 0, 0)
			return err
		}
		return t.openMem()
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Leader is the thread whose tid is the process's pid.
func (g *ThreadGroup) Leader() *Tracee { return g.Threads[0] }

// States reads every thread's ThreadState, the leader's first. The
// threads run their query batches one after another on the leader's
// executor mapping (they share its memory).
func (g *ThreadGroup) States() ([]ThreadState, error) {
	leader := g.Leader()
	if err := leader.InstallExecutor(); err != nil {
		return nil, err
	}
	out := make([]ThreadState, 0, len(g.Threads))
	for _, t := range g.Threads {
		if t != leader {
			t.exec, t.vdsoSys = leader.exec, leader.vdsoSys
		}
		st, err := t.threadState(leader.pid)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Detach detaches every thread (the leader last); it returns the first
// error.
func (g *ThreadGroup) Detach() error {
	var first error
	for i := len(g.Threads) - 1; i >= 0; i-- {
		t := g.Threads[i]
		if i > 0 {
			t.exec = 0 // the mapping is the leader's to keep or remove
		}
		if err := t.Detach(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// SetSigMask sets the stopped thread's signal mask (PTRACE_SETSIGMASK).
func (t *Tracee) SetSigMask(mask uint64) error {
	return t.tr.Do(func() error {
		if err := t.stopped("set signal mask of"); err != nil {
			return err
		}
		if err := t.ptracePtr(unix.PTRACE_SETSIGMASK, 8, unsafe.Pointer(&mask)); err != nil {
			return fmt.Errorf("set signal mask of %d: %w", t.pid, err)
		}
		return nil
	})
}
