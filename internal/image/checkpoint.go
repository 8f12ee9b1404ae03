package image

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/atomicfile"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/kobj"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// Leave says what Checkpoint does with a process it seized.
type Leave int

const (
	// LeaveKilled kills the process after the dump (as CRIU does).
	LeaveKilled Leave = iota
	// LeaveRunning detaches: the process goes on.
	LeaveRunning
	// LeaveStopped detaches it in a group stop (SIGSTOP): SIGCONT resumes it.
	LeaveStopped
)

// Options tune a checkpoint.
type Options struct {
	// Reconnect lists fds (pipes, unix sockets: the agent's control
	// channel, stdio) that are not dumped: Restore puts a descriptor the
	// caller gives in their place (RestoreOptions.Reconnect).
	Reconnect []int
	// Drop lists fds that are not restored at all (a template's fork
	// channel).
	Drop []int
	// SeccompReinstalled accepts a process under a seccomp filter: the
	// caller installs the same filter again at restore (RestoreOptions.Epilogue);
	// the image records no filter.
	SeccompReinstalled bool
	// CopyAnon restores anonymous memory as anonymous memory, its dumped
	// pages read in (pread): MADV_DONTNEED zeroes it, as in the
	// original. Without it each anonymous VMA maps pages.img privately
	// (no copy, page cache shared between restores), and MADV_DONTNEED
	// on it brings the checkpoint's bytes back instead of zeros.
	CopyAnon bool
	// samePlace is set by Checkpoint once checkPlace found the process
	// in the checkpointer's namespaces: its paths are ours, and each
	// file's identity is checked against its path.
	samePlace bool
	// IDBase is the host uid and gid that root of the process's user
	// namespace maps to (0: the initial namespace): credentials are
	// recorded relative to it, as the process itself sees them, so that
	// a restore as root gives it back the ids it had (uid - IDBase).
	IDBase int
	// Leave applies to Checkpoint only (CheckpointTracee leaves the tracee
	// to its caller).
	Leave Leave
	// Threads are the process's other threads for CheckpointTracee,
	// stopped by the caller, as ptrace.ThreadGroup.States read them (the
	// main thread's left out): a fork template gives those Freeze
	// recorded (sfork.Template.Threads). Every thread of the process must
	// be given; Checkpoint seizes and reads them itself.
	Threads []ptrace.ThreadState
}

// UnsupportedError is a checkpoint refusal: something of the process that
// the image cannot restore faithfully. errors.Is matches
// errdefs.ErrNotSupported.
type UnsupportedError struct {
	Pid  int
	What string // "fd 5 (socket:[1234])", "mapping 7f..-7f.. /memfd:x (deleted)", ...
	Why  string
}

// transientError is a refusal that would not stand a moment later (a
// signal about to be delivered): Checkpoint lets the process run and
// tries again.
type transientError struct{ *UnsupportedError }

func (e transientError) Unwrap() error { return e.UnsupportedError }

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("checkpoint %d: %s: %s", e.Pid, e.What, e.Why)
}

func (e *UnsupportedError) Is(target error) bool { return target == errdefs.ErrNotSupported }

// Checkpoint seizes every thread of pid (ptrace.SeizeGroup), dumps the
// process into dir (created if needed) and then kills, detaches or stops
// it as opts.Leave says. opts.Threads is ignored: the threads are read
// here.
func Checkpoint(tr *ptrace.Tracer, pid int, dir string, opts Options) (*Image, error) {
	if err := checkPlace(pid); err != nil {
		return nil, err
	}
	opts.samePlace = true
	for try := 0; ; try++ {
		img, g, err := checkpointOnce(tr, pid, dir, opts)
		var te transientError
		if errors.As(err, &te) && try < 20 {
			// Run a moment: the signal is delivered.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if err != nil {
			return nil, err
		}
		return finish(tr, pid, g, img, opts)
	}
}

// checkpointOnce seizes pid and dumps it; a refused or failed dump leaves
// it running as it was.
func checkpointOnce(tr *ptrace.Tracer, pid int, dir string, opts Options) (*Image, *ptrace.ThreadGroup, error) {
	g, err := tr.SeizeGroup(pid, ptrace.TraceFork(false), ptrace.TraceClone(false), ptrace.ExitKill(false))
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint %d: %w", pid, err)
	}
	states, err := g.States()
	if err != nil {
		release(g)
		return nil, nil, fmt.Errorf("checkpoint %d: %w", pid, err)
	}
	opts.Threads = states[1:]
	img, err := CheckpointTracee(g.Leader(), dir, opts)
	if err != nil {
		release(g)
		return nil, nil, err
	}
	return img, g, nil
}

// release removes the executor States mapped and detaches the group: the
// process goes on without it.
func release(g *ptrace.ThreadGroup) error {
	rerr := g.Leader().RemoveExecutor()
	if err := g.Detach(); rerr == nil {
		rerr = err
	}
	return rerr
}

// finish leaves the dumped process as opts.Leave says.
func finish(tr *ptrace.Tracer, pid int, g *ptrace.ThreadGroup, img *Image, opts Options) (*Image, error) {
	if opts.Leave == LeaveKilled {
		// Killed while stopped: it runs nothing more. Its traced threads
		// report their deaths to us; reaped here, the process becomes
		// its parent's zombie.
		unix.Kill(pid, unix.SIGKILL)
		tids := make([]int, len(g.Threads))
		for i, th := range g.Threads {
			tids[i] = th.Pid()
		}
		tr.Do(func() error {
			ptrace.ReapKilled(tids, 5*time.Second)
			return nil
		})
		g.Detach() // gone: only closes their memory files
		return img, nil
	}
	if opts.Leave == LeaveStopped {
		unix.Kill(pid, unix.SIGSTOP)
	}
	if derr := release(g); derr != nil {
		return img, derr
	}
	return img, nil
}

// state is everything a checkpoint collects before it compiles the plan.
type state struct {
	pid      int
	regs     ptrace.Regs
	xstate   []byte
	execLo   uint64
	execHi   uint64
	vmas     []procfs.Mapping
	gd       map[uint64]bool // start of each VMA the kernel grows down (VM_GROWSDOWN)
	sigact   [65][32]byte
	hasAct   [65]bool
	altstack [24]byte
	tidAddr  uint64
	brk      uint64
	robust   [2]uint64
	itimers  [3][32]byte
	sigmask  uint64
	rseq     ptrace.RSeq
	threads  []ptrace.ThreadState // the other threads, registers made restorable
	stat     procfs.StatInfo
	status   procfs.StatusInfo
	auxv     []byte
	vdsoBase uint64
	persona  uint64
	cwd      string
	exe      string
	comm     string
	rlimits  [numRlimits]unix.Rlimit
	attrs    procAttrs
	advice   map[uint64][]int // madvise advice to give again, by VMA start (readVMAFlags)
	mayWrite map[uint64]bool  // VMAs with VM_MAYWRITE (smaps "mw"), by start
	// samePlace: Options.samePlace; file identities are checked.
	samePlace bool
	copyAnon  bool // Options.CopyAnon
	// sessionLeader: the process led its session (and its group), alone
	// (checkTree); the plan calls setsid.
	sessionLeader bool
	fds           []fdState
	// objects are the event objects and in-process pipes the restore
	// re-creates after the plan (package kobj).
	objects *kobj.Table
	// mainTID is the main thread's tid in its PID namespace; timers and
	// signals are the POSIX timers and queued signals (timers.go).
	mainTID int
	timers  []Timer
	signals []Signal
}

type fdState struct {
	fd   int
	link string
	kind uint32
	info procfs.FDInfo
	// locks are the file locks and leases held through it (fdinfo), as
	// checked by parseLocks; placeLocks keeps each POSIX lock on one fd.
	locks []procfs.Lock
	// dupOf is the lower fd whose open file description this one shares
	// (dup, fork, SCM_RIGHTS: one offset, one set of status flags), made
	// again by a dup3 of it; -1 for none.
	dupOf int
}

// CheckpointTracee dumps a stopped tracee, the main thread of its
// process, into dir; its other threads, stopped too, are opts.Threads. The
// tracee is left as it was (stopped, its executor, if it had one, still
// mapped; one is installed and removed again otherwise). A process with
// threads not given is refused: with a *ptrace.MultiThreadedError if none
// was given.
func CheckpointTracee(t *ptrace.Tracee, dir string, opts Options) (*Image, error) {
	pid := t.Pid()
	tids, err := procfs.Threads(pid)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %d: %w", pid, err)
	}
	if len(tids) > 1 && len(opts.Threads) == 0 {
		return nil, &ptrace.MultiThreadedError{Pid: pid, Threads: len(tids)}
	}
	given := map[int]bool{pid: true}
	for _, st := range opts.Threads {
		given[st.TID] = true
	}
	match := len(given) == len(tids)
	for _, tid := range tids {
		match = match && given[tid]
	}
	if !match {
		return nil, fmt.Errorf("checkpoint %d: its threads are %v, the caller gave %d others: %w", pid, tids, len(opts.Threads), errdefs.ErrConflict)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint %d: %w", pid, err)
	}
	// Pending signals before anything runs in the process: a pending
	// SIGTRAP would be taken for the executor's own trap.
	if err := checkPending(pid); err != nil {
		return nil, err
	}
	s := &state{pid: pid, samePlace: opts.samePlace, copyAnon: opts.CopyAnon}
	had, _ := t.ExecutorRegion()
	err = t.Tracer().Do(func() error {
		if err := s.collectTracee(t, opts.Threads); err != nil {
			return err
		}
		if had == 0 {
			return t.RemoveExecutor()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint %d: %w", pid, err)
	}
	if err := s.collectProc(opts); err != nil {
		return nil, err
	}
	return s.write(t, dir, opts)
}

// collectTracee records what the stopped tracee and its threads (stopped
// by the caller, threads) hold: the threads' state, the signals and
// timers, what the process has (queryProcess), then its mappings.
func (s *state) collectTracee(t *ptrace.Tracee, threads []ptrace.ThreadState) error {
	if err := s.collectThreads(t, threads); err != nil {
		return err
	}
	mi, err := procfs.Thread(s.pid, s.pid)
	if err != nil {
		return err
	}
	s.mainTID = mi.NSTID
	if err := s.readSignals(threads); err != nil {
		return err
	}
	timers, err := s.readTimers()
	if err != nil {
		return err
	}
	if err := s.queryProcess(t, timers); err != nil {
		return err
	}

	addr, size := t.ExecutorRegion()
	s.execLo, s.execHi = uint64(addr), uint64(addr)+uint64(size)
	// Maps last: after the executor went in, so that it is left out.
	if s.vmas, err = procfs.Maps(s.pid); err != nil {
		return err
	}
	// Which mappings grow down (the main thread's stack): smaps alone
	// says. Without it, "[stack]" is the one.
	s.gd, _ = growsDown(s.pid)
	return nil
}

// collectThreads records the main thread's state (t's) and the other
// threads', refusing what cannot be restored: rseq flags, too many
// threads, seccomp filters that differ, xstate of another size.
func (s *state) collectThreads(t *ptrace.Tracee, threads []ptrace.ThreadState) error {
	th, err := t.ThreadState()
	if err != nil {
		return err
	}
	// The restored thread is not inside a syscall: no restart logic may
	// apply to the registers we load.
	th.Regs.Orig_rax = ^uint64(0)
	s.regs, s.xstate = th.Regs, th.XState
	s.altstack, s.tidAddr, s.robust, s.sigmask, s.rseq = th.AltStack, th.TIDAddress, th.Robust, th.SigMask, th.RSeq
	if s.rseq.Flags != 0 {
		return &UnsupportedError{s.pid, "rseq", fmt.Sprintf("registration flags %#x", s.rseq.Flags)}
	}
	if len(threads) > maxThreads {
		return &UnsupportedError{s.pid, "threads", fmt.Sprintf("%d threads (at most %d are checkpointed)", len(threads)+1, maxThreads+1)}
	}
	if err := ptrace.SameSeccomp(append([]ptrace.ThreadState{th}, threads...)); err != nil {
		return fmt.Errorf("checkpoint %d: %w", s.pid, err)
	}
	for _, st := range threads {
		what := fmt.Sprintf("thread %d", st.TID)
		switch {
		case st.RSeq.Flags != 0:
			return &UnsupportedError{s.pid, what, fmt.Sprintf("rseq registration flags %#x", st.RSeq.Flags)}
		case len(st.XState) != len(th.XState):
			return &UnsupportedError{s.pid, what, fmt.Sprintf("%d bytes of xstate, the main thread %d", len(st.XState), len(th.XState))}
		}
		// Registers normalised (an interrupted syscall is re-issued) and
		// outside any syscall, as the main thread's.
		st.Regs.Orig_rax = ^uint64(0)
		s.threads = append(s.threads, st)
	}
	return nil
}

// queryProcess asks the tracee, in one batch, what the process has, not
// the thread: signal handlers, brk, attributes, interval timers and the
// POSIX timers (timers, from readTimers).
func (s *state) queryProcess(t *ptrace.Tracee, timers []procfs.PosixTimer) error {
	b := ptrace.NewBatch()
	var acts [65]ptrace.Arg
	for sig := 1; sig <= 64; sig++ {
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) {
			continue
		}
		acts[sig] = b.Space(32)
		b.Add(unix.SYS_RT_SIGACTION, ptrace.Lit(int64(sig)), ptrace.Lit(0), acts[sig], ptrace.Lit(8)).With(ptrace.IgnoreError)
	}
	brk := b.Add(unix.SYS_BRK, ptrace.Lit(0))
	attrs := queryAttrs(b)
	var its [3]ptrace.Arg
	for w := range its {
		its[w] = b.Space(32)
		b.Add(unix.SYS_GETITIMER, ptrace.Lit(int64(w)), its[w])
	}
	readTimers := s.queryTimers(b, timers)
	res, err := t.Exec(b)
	if err != nil {
		return fmt.Errorf("query batch: %w", err)
	}
	if err := readTimers(res); err != nil {
		return err
	}
	for sig := 1; sig <= 64; sig++ {
		if d := res.Data(acts[sig], 32); d != nil {
			copy(s.sigact[sig][:], d)
			s.hasAct[sig] = true
		}
	}
	s.brk = uint64(res.Value(brk))
	s.attrs = attrs(res)
	for w := range its {
		copy(s.itimers[w][:], res.Data(its[w], 32))
	}
	return nil
}

func (s *state) collectProc(opts Options) error {
	pid := s.pid
	refuse := func(what, why string) error { return &UnsupportedError{pid, what, why} }
	var err error
	if s.status, err = procfs.Status(pid); err != nil {
		return err
	}
	if opts.IDBase != 0 {
		s.status["Groups"] = shiftIDs(s.status["Groups"], opts.IDBase)
	}
	for _, k := range []string{"Uid", "Gid"} {
		f := strings.Fields(s.status[k])
		if len(f) != 4 || f[0] != f[1] || f[0] != f[2] || f[0] != f[3] {
			return refuse("credentials", fmt.Sprintf("%s %q are not all equal", k, s.status[k]))
		}
		if opts.IDBase != 0 {
			s.status[k] = shiftIDs(s.status[k], opts.IDBase)
		}
	}
	if v := s.status["Seccomp"]; v != "" && v != "0" && !opts.SeccompReinstalled {
		return refuse("seccomp", "seccomp filters are not checkpointed yet (mode "+v+")")
	}
	if err := s.checkThreads(); err != nil {
		return err
	}
	if err := s.checkTree(); err != nil {
		return err
	}
	if err := s.checkShmemAlone(); err != nil {
		return err
	}
	if err := s.checkProcAttrs(); err != nil {
		return err
	}
	if err := s.readVMAFlags(); err != nil {
		return err
	}
	if root, err := procfs.Link(pid, "root"); err != nil || root != "/" {
		return refuse("root", fmt.Sprintf("root %q: only processes rooted at / are checkpointed", root))
	}
	if s.stat, err = procfs.Stat(pid); err != nil {
		return err
	}
	if s.auxv, err = procfs.Auxv(pid); err != nil {
		return err
	}
	s.vdsoBase, _ = procfs.AuxvValue(s.auxv, procfs.AtSysinfoEhdr)
	if s.persona, err = procfs.Personality(pid); err != nil {
		return err
	}
	if s.cwd, err = procfs.Link(pid, "cwd"); err != nil {
		return err
	}
	if strings.HasSuffix(s.cwd, " (deleted)") {
		return refuse("cwd", "deleted directory")
	}
	s.exe, _ = procfs.Link(pid, "exe")
	s.comm = s.stat.Comm
	// /proc/PID/limits, not prlimit(2): that needs CAP_SYS_RESOURCE for a
	// process of another uid.
	limits, err := procfs.Limits(pid)
	if err != nil {
		return fmt.Errorf("checkpoint %d: rlimits: %w", pid, err)
	}
	if len(limits) < numRlimits {
		return fmt.Errorf("checkpoint %d: rlimits: %d in /proc/%d/limits, want %d", pid, len(limits), pid, numRlimits)
	}
	for r := range s.rlimits {
		s.rlimits[r] = unix.Rlimit{Cur: limits[r].Cur, Max: limits[r].Max}
	}
	return s.collectFDs(opts)
}

// checkThreads refuses other threads whose credentials are not the main
// thread's (the plan gives every thread the main thread's).
func (s *state) checkThreads() error {
	main, err := procfs.Thread(s.pid, s.pid)
	if err != nil {
		return err
	}
	for _, st := range s.threads {
		ti, err := procfs.Thread(s.pid, st.TID)
		if err != nil {
			return fmt.Errorf("checkpoint %d: %w", s.pid, err)
		}
		what := fmt.Sprintf("thread %d", st.TID)
		if ti.Uid != main.Uid || ti.Gid != main.Gid || ti.Groups != main.Groups {
			return &UnsupportedError{s.pid, what, fmt.Sprintf("credentials (uid %q gid %q groups %q) differ from the main thread's", ti.Uid, ti.Gid, ti.Groups)}
		}
	}
	return nil
}

var allowedDevices = map[string]bool{
	"/dev/null": true, "/dev/zero": true, "/dev/full": true, "/dev/random": true, "/dev/urandom": true,
}

// collectFDs records the open descriptors: each is reopened by the plan
// (files by path, reconnected ones), made again with its state by
// objects.bin (kobj: event objects, pipes, FIFOs, sockets, files without
// a name), dropped, or refused by name.
func (s *state) collectFDs(opts Options) error {
	pid := s.pid
	// In increasing order, as the plan restores them.
	open, err := procfs.FDs(pid)
	if err != nil {
		return err
	}
	reconnect := fdSet(opts.Reconnect)
	drop := fdSet(opts.Drop)
	if err := s.captureObjects(opts); err != nil {
		return err
	}
	made := fdSet(s.objects.FDs())
	var later kobjFDs
	for _, o := range open {
		if drop[o.Num] || made[o.Num] {
			continue
		}
		if err := s.classifyFD(o, reconnect, &later); err != nil {
			return err
		}
	}
	for fd := range reconnect {
		return fmt.Errorf("checkpoint %d: reconnect fd %d is not open: %w", pid, fd, errdefs.ErrInvalid)
	}
	if err := s.shareDescriptions(); err != nil {
		return err
	}
	if err := s.placeLocks(); err != nil {
		return err
	}
	return s.captureLater(later)
}

// fdSet is fds as a set.
func fdSet(fds []int) map[int]bool {
	set := map[int]bool{}
	for _, fd := range fds {
		set[fd] = true
	}
	return set
}

// kobjFDs are the descriptors that objects.bin makes again, set aside by
// classifyFD and captured by captureLater once every fd is classified.
type kobjFDs struct {
	nameless, fifos, sockets []procfs.FD
}

// captureObjects captures the event objects and pipes with both ends
// inside: re-created with their state by kobj (a pipe's bytes are read
// with tee, so the process, which may go on, keeps them). The fds
// declared reconnect or drop are not captured.
func (s *state) captureObjects(opts Options) error {
	var err error
	if s.objects, err = kobj.CaptureObjects(s.pid, append(slices.Clone(opts.Reconnect), opts.Drop...)); err != nil {
		var se *kobj.SharedError
		if errors.As(err, &se) && len(se.Objects) > 0 {
			o := se.Objects[0]
			return &UnsupportedError{s.pid, o.What, o.Why + " (declare it reconnect, or drop it)"}
		}
		return fmt.Errorf("checkpoint %d: %w", s.pid, err)
	}
	return nil
}

// classifyFD records o, an fd that kobj did not capture: a reconnected
// one (taken out of reconnect) or a file reopened by path in s.fds, one
// that objects.bin makes again in later, or an UnsupportedError.
func (s *state) classifyFD(o procfs.FD, reconnect map[int]bool, later *kobjFDs) error {
	fd := o.Num
	f := fdState{fd: fd, link: o.Link, info: o.Info, dupOf: -1}
	what := fmt.Sprintf("fd %d (%s)", fd, f.link)
	switch {
	case reconnect[fd]:
		f.kind = FDReconnect
		delete(reconnect, fd)
	case strings.HasPrefix(f.link, "/"):
		keep, err := s.classifyPath(&f, o, what, later)
		if err != nil || !keep {
			return err
		}
	case strings.HasPrefix(f.link, "socket:["):
		// Internet sockets holding no connection: made again by
		// objects.bin (kobj.CaptureSockets), which refuses the others
		// by name.
		later.sockets = append(later.sockets, o)
		return nil
	case strings.HasPrefix(f.link, "anon_inode:"):
		return &UnsupportedError{s.pid, what, strings.TrimPrefix(f.link, "anon_inode:") + " is not checkpointed"}
	default:
		return &UnsupportedError{s.pid, what, "unknown kind of descriptor"}
	}
	s.fds = append(s.fds, f)
	return nil
}

// classifyPath classifies f, an fd whose link is a path: a file or
// directory the plan reopens (keep: f is filled in), a FIFO or a file
// without a name that objects.bin makes again (set aside in later), or
// one that is refused.
func (s *state) classifyPath(f *fdState, o procfs.FD, what string, later *kobjFDs) (keep bool, err error) {
	pid, fd := s.pid, f.fd
	if strings.HasPrefix(f.link, "/proc/") {
		return false, &UnsupportedError{pid, what, "files under /proc are not checkpointed"}
	}
	if strings.HasPrefix(f.link, "/dev/zero (deleted)") {
		return false, &UnsupportedError{pid, what, "a descriptor of shared anonymous memory is not checkpointed"}
	}
	if strings.HasPrefix(f.link, "/memfd:") || strings.HasSuffix(f.link, " (deleted)") {
		// A file without a name: made again, with its contents, by
		// objects.bin (kobj.CaptureFiles).
		later.nameless = append(later.nameless, o)
		return false, nil
	}
	st, err := procfs.StatFD(pid, fd)
	if err != nil {
		return false, err
	}
	if err := s.checkFileIdentity(what, f.link, st.Dev, st.Ino); err != nil {
		return false, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO:
		// Reopened by its path with its queued bytes, by objects.bin
		// (kobj.CaptureFIFOs).
		if len(o.Info.Locks) > 0 {
			return false, &UnsupportedError{pid, what, "file locks on a FIFO are not checkpointed"}
		}
		later.fifos = append(later.fifos, o)
		return false, nil
	case unix.S_IFREG, unix.S_IFDIR:
	case unix.S_IFCHR:
		if !allowedDevices[f.link] && !strings.HasPrefix(f.link, "/dev/pts/") {
			return false, &UnsupportedError{pid, what, "character device not on the allow-list"}
		}
	default:
		return false, &UnsupportedError{pid, what, fmt.Sprintf("file type %#o is not checkpointed", st.Mode&unix.S_IFMT)}
	}
	f.kind = FDFile
	if f.locks, err = parseLocks(what, pid, o.Info.Locks); err != nil {
		return false, err
	}
	return true, nil
}

// captureLater captures what classifyFD set aside, into the objects:
// the FIFOs (after the objects' data, which their bytes are counted
// with), the sockets, then the files without a name.
func (s *state) captureLater(later kobjFDs) error {
	if len(later.fifos) > 0 {
		data := 0
		for _, o := range s.objects.Objects {
			data += len(o.Data)
		}
		objs, err := kobj.CaptureFIFOs(s.pid, later.fifos, data)
		if err != nil {
			return s.captureError(err)
		}
		s.objects.Objects = append(s.objects.Objects, objs...)
	}
	objs, err := kobj.CaptureSockets(s.pid, later.sockets)
	if err != nil {
		return s.captureError(err)
	}
	s.objects.Objects = append(s.objects.Objects, objs...)
	return s.captureFiles(later.nameless)
}

// captureError is a kobj capture's error as the checkpoint's: its first
// refusal as an UnsupportedError naming the object.
func (s *state) captureError(err error) error {
	var se *kobj.SharedError
	if errors.As(err, &se) && len(se.Objects) > 0 {
		return &UnsupportedError{s.pid, se.Objects[0].What, se.Objects[0].Why}
	}
	return fmt.Errorf("checkpoint %d: %w", s.pid, err)
}

// shareDescriptions finds the fds reopened by path that share an open
// file description with a lower one (kcmp): the plan dups those instead
// of opening the file again, so that their offset and status flags stay
// one.
func (s *state) shareDescriptions() error {
	for i := range s.fds {
		f := &s.fds[i]
		if f.kind != FDFile {
			continue
		}
		for _, g := range s.fds[:i] {
			if g.kind != FDFile || g.link != f.link || g.dupOf >= 0 {
				continue
			}
			same, err := sameDescription(s.pid, g.fd, f.fd)
			if err != nil {
				return fmt.Errorf("checkpoint %d: %w", s.pid, err)
			}
			if same {
				f.dupOf = g.fd
				break
			}
		}
	}
	return nil
}

// captureFiles adds the files without a name (memfds, deleted files) at
// fds to the objects: each is made again at restore with the process's
// own credentials, so a ghost file must be one the process could make
// again where it was (owner, directory).
func (s *state) captureFiles(fds []procfs.FD) error {
	if len(fds) == 0 {
		return nil
	}
	objs, err := kobj.CaptureFiles(s.pid, fds)
	if err != nil {
		return s.captureError(err)
	}
	uid, _ := s.status.Uint("Uid", 10)
	gid, _ := s.status.Uint("Gid", 10)
	groups, _ := s.status.Uints("Groups", 10)
	for _, o := range objs {
		f := o.File
		what := fmt.Sprintf("fd %d (%s)", o.Descs[0].FDs[0].Num, f.Name)
		if f.Kind != kobj.Ghost || uid == 0 {
			continue
		}
		inGroup := uint64(f.Gid) == gid || slices.Contains(groups, uint64(f.Gid))
		if uint64(f.Uid) != uid || !inGroup {
			return &UnsupportedError{s.pid, what, fmt.Sprintf("a deleted file owned by %d:%d, which the process (uid %d) cannot make again", f.Uid, f.Gid, uid)}
		}
		var dst unix.Stat_t
		dir := filepath.Dir(f.Name)
		if err := unix.Stat(dir, &dst); err != nil {
			return &UnsupportedError{s.pid, what, "its directory is gone (the restore makes the file again there)"}
		}
		var bits uint32 = 0o003
		switch {
		case uint64(dst.Uid) == uid:
			bits = 0o300
		case uint64(dst.Gid) == gid || slices.Contains(groups, uint64(dst.Gid)):
			bits = 0o030
		}
		if dst.Mode&bits != bits {
			return &UnsupportedError{s.pid, what, fmt.Sprintf("its directory %s (mode %#o) is not writable by the process: the restore makes the file again there", dir, dst.Mode&0o7777)}
		}
	}
	s.objects.Objects = append(s.objects.Objects, objs...)
	if len(s.objects.Objects) > kobj.MaxObjects || s.objects.Len() > kobj.MaxFDs {
		return &UnsupportedError{s.pid, "descriptors", fmt.Sprintf("%d objects on %d descriptors (at most %d on %d are re-created)", len(s.objects.Objects), s.objects.Len(), kobj.MaxObjects, kobj.MaxFDs)}
	}
	return nil
}

// growsDown returns the start of each mapping of pid whose smaps VmFlags
// hold "gd" (VM_GROWSDOWN).
func growsDown(pid int) (map[uint64]bool, error) {
	es, err := procfs.Smaps(pid)
	if err != nil {
		return nil, err
	}
	out := map[uint64]bool{}
	for _, e := range es {
		if e.HasFlag("gd") {
			out[e.Start] = true
		}
	}
	return out, nil
}

// numRlimits is the number of RLIMIT_* resources a checkpoint keeps.
const numRlimits = 16

// dumpVMA is one mapping as the image keeps it.
type dumpVMA struct {
	procfs.Mapping
	kind      uint32
	growsDown bool        // VM_GROWSDOWN: restored as such (the stack)
	shared    bool        // shared anonymous memory: every page is dumped
	mayWrite  bool        // a shared file mapping of a file opened for writing
	runs      [][2]uint64 // dumped page runs [start, end) (addresses)
	pages     uint64      // pages.img offset of the region, or noPages
}

// classify turns maps into the image's VMAs, refusing what it cannot restore.
func (s *state) classify() ([]dumpVMA, error) {
	var out []dumpVMA
	var vmas []procfs.Mapping
	for _, v := range s.vmas {
		if v.Start < s.execHi && s.execLo < v.End {
			// The executor region, maybe merged by the kernel with an
			// adjacent anonymous mapping: keep what lies outside it.
			if v.Start < s.execLo {
				w := v
				w.End = s.execLo
				vmas = append(vmas, w)
			}
			if v.End > s.execHi {
				w := v
				if w.Path == "" || strings.HasPrefix(w.Path, "/") {
					w.Offset += s.execHi - v.Start
				}
				w.Start = s.execHi
				vmas = append(vmas, w)
			}
			continue
		}
		vmas = append(vmas, v)
	}
	for _, v := range vmas {
		what := fmt.Sprintf("mapping %x-%x %s", v.Start, v.End, v.Path)
		d := dumpVMA{Mapping: v, pages: noPages}
		switch {
		case v.Path == "[vsyscall]":
			continue
		case v.Path == "[vvar]" || v.Path == "[vvar_vclock]" || v.Path == "[vdso]":
			d.kind = VMAVDSO
		case kobj.SharedAnon(v):
			// Dumped whole, mapped from pages.img, then made shared
			// again by objects.bin (shmem.go).
			d.kind, d.shared = VMAAnon, true
		case v.Path == "" || v.Path == "[heap]" || v.Path == "[stack]" || strings.HasPrefix(v.Path, "[anon:"):
			if v.Perms.Shared {
				return nil, &UnsupportedError{s.pid, what, "shared anonymous memory is not checkpointed"}
			}
			d.kind = VMAAnon
			if s.gd != nil {
				d.growsDown = s.gd[v.Start]
			} else {
				d.growsDown = v.Path == "[stack]"
			}
		case strings.HasPrefix(v.Path, "/") && !strings.HasSuffix(v.Path, " (deleted)") &&
			!strings.HasPrefix(v.Path, "/memfd:") && !strings.HasPrefix(v.Path, "/SYSV"):
			if v.Perms.Shared {
				d.kind = VMAFileShared
				// VM_MAYWRITE: the file was opened for writing; reopened
				// so, a later mprotect(PROT_WRITE) works as it did.
				d.mayWrite = s.mayWrite[v.Start]
			} else {
				d.kind = VMAFilePriv
			}
		default:
			return nil, &UnsupportedError{s.pid, what, "this kind of mapping is not checkpointed"}
		}
		out = append(out, d)
	}
	return out, nil
}

// dumpPages finds the pages to dump (pagemap) and writes them to pages.img.
func (s *state) dumpPages(t *ptrace.Tracee, vmas []dumpVMA, path string) (uint64, uint64, error) {
	pm, err := procfs.OpenPagemap(s.pid)
	if err != nil {
		return 0, 0, err
	}
	defer pm.Close()
	out, err := os.Create(path)
	if err != nil {
		return 0, 0, err
	}
	defer out.Close()
	var cursor, written uint64
	zero := make([]byte, pageSize)
	for i := range vmas {
		d := &vmas[i]
		if d.kind != VMAAnon && d.kind != VMAFilePriv {
			continue
		}
		n := d.Len() / pageSize
		ents, err := pm.Read(d.Start, d.End)
		if err != nil {
			return 0, 0, err
		}
		var runStart uint64 = noPages
		for p := uint64(0); p <= n; p++ {
			dump := false
			if p < n {
				e := ents[p]
				if d.shared {
					// Its pages may be in the shmem object and not
					// in this process's page tables.
					dump = true
				} else if d.kind == VMAAnon {
					dump = e.Present() || e.Swapped()
				} else {
					dump = (e.Present() && !e.FileOrShared()) || e.Swapped()
				}
			}
			addr := d.Start + p*pageSize
			if dump && runStart == noPages {
				runStart = addr
			} else if !dump && runStart != noPages {
				d.runs = append(d.runs, [2]uint64{runStart, addr})
				runStart = noPages
			}
		}
		if len(d.runs) == 0 {
			continue
		}
		d.pages = cursor
		// One page of gap between regions: adjacent VMAs mapped from
		// contiguous offsets would merge into one.
		cursor += d.Len() + pageSize
		for _, r := range d.runs {
			buf := make([]byte, r[1]-r[0])
			if err := t.ReadMem(uintptr(r[0]), buf); errors.Is(err, unix.EIO) {
				return 0, 0, &UnsupportedError{s.pid, strings.TrimSpace(fmt.Sprintf("mapping %x-%x %s", d.Start, d.End, d.Path)),
					"its pages cannot be read (guard pages, MADV_GUARD_INSTALL, are not checkpointed)"}
			} else if err != nil {
				return 0, 0, err
			}
			for off := uint64(0); off < uint64(len(buf)); off += pageSize {
				pg := buf[off : off+pageSize]
				if bytes.Equal(pg, zero) {
					continue // a hole reads as zeros
				}
				if _, err := out.WriteAt(pg, int64(d.pages+r[0]-d.Start+off)); err != nil {
					return 0, 0, err
				}
				written += pageSize
			}
		}
	}
	if err := out.Truncate(int64(cursor)); err != nil {
		return 0, 0, err
	}
	return cursor, written, out.Close()
}

// pickExecAddr finds a hole of need bytes at or above 4 GiB in the image's
// layout: the restorer (a tiny static ELF low in memory, its stack and vDSO
// at the top) has nothing there either.
func pickExecAddr(vmas []dumpVMA, need uint64) (uint64, error) {
	cand := uint64(1 << 32)
	for _, v := range vmas {
		if v.End <= cand {
			continue
		}
		if cand+need <= v.Start {
			return cand, nil
		}
		cand = (v.End + (1 << 20) - 1) &^ ((1 << 20) - 1)
	}
	if cand+need <= taskSize {
		return cand, nil
	}
	return 0, errors.New("no room for the executor region")
}

type debugImage struct {
	FormatVersion int
	Pid           int
	Kernel        string
	ExecAddr      string
	PagesSize     uint64
	PagesWritten  uint64
	Entries       int // of the last batch
	Batches       int
	VMAs          []string
	FDs           []string
	Relocations   int
	Objects       string
	Threads       []string
}

func (s *state) write(t *ptrace.Tracee, dir string, opts Options) (*Image, error) {
	vmas, err := s.classify()
	if err != nil {
		return nil, err
	}
	pagesPath := filepath.Join(dir, PagesFile)
	size, written, err := s.dumpPages(t, vmas, pagesPath)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %d: pages: %w", s.pid, err)
	}
	c, err := s.compile(vmas)
	if err != nil {
		return nil, err
	}
	if err := s.placeScratch(vmas, c.hdr); err != nil {
		return nil, err
	}
	c.hdr.PagesSize = size
	meta := encodeMeta(c.hdr, c.vmas, c.relocs, c.fds, s.xstate, c.threads, c.timers, c.signals)
	batches := append(slices.Clone(c.done), c.b)
	for _, b := range batches {
		if n := batchSize(b); n > ptrace.MaxBatchSize {
			return nil, &UnsupportedError{s.pid, "address space", fmt.Sprintf("%d mappings make a plan batch of %d bytes, more than %d", len(vmas), n, ptrace.MaxBatchSize)}
		}
	}
	if len(batches) > maxPlanBatches {
		return nil, &UnsupportedError{s.pid, "address space", fmt.Sprintf("%d mappings make a plan of %d batches, more than %d", len(vmas), len(batches), maxPlanBatches)}
	}
	plan := encodePlan(batches)
	for name, b := range map[string][]byte{MetaFile: meta, PlanFile: plan, ObjectsFile: s.objects.Encode()} {
		if err := atomicfile.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	os.Remove(filepath.Join(dir, WSFile))
	if err := writeManifest(dir, []string{MetaFile, PlanFile, ObjectsFile, PagesFile}); err != nil {
		return nil, err
	}
	dbg := debugImage{FormatVersion: FormatVersion, Pid: s.pid, Kernel: cstring(c.hdr.Kernel[:]),
		ExecAddr: fmt.Sprintf("%#x", c.hdr.ExecAddr), PagesSize: size, PagesWritten: written,
		Entries: c.b.Len(), Batches: len(batches), Relocations: len(c.relocs)}
	for _, v := range vmas {
		dbg.VMAs = append(dbg.VMAs, fmt.Sprintf("%x-%x %s kind=%d runs=%d pages=%#x %s", v.Start, v.End, v.Perms, v.kind, len(v.runs), v.pages, v.Path))
	}
	for _, st := range s.threads {
		dbg.Threads = append(dbg.Threads, fmt.Sprintf("tid %d (%d on the host) %q rip=%#x sigmask=%#x", st.NSTID, st.TID, st.Comm, st.Regs.Rip, st.SigMask))
	}
	for _, f := range s.fds {
		dbg.FDs = append(dbg.FDs, fmt.Sprintf("%d kind=%d flags=%#o pos=%d %s", f.fd, f.kind, f.info.Flags, f.info.Pos, f.link))
	}
	dbg.Objects = s.objects.Summary()
	if j, err := json.MarshalIndent(dbg, "", "  "); err == nil {
		atomicfile.WriteFile(filepath.Join(dir, DebugFile), j, 0o644)
	}
	return Open(dir)
}

// sortFDs orders fds by number.
func sortFDs(fds []fdState) { sort.Slice(fds, func(i, j int) bool { return fds[i].fd < fds[j].fd }) }

// shiftIDs subtracts base from each id of a status line ("100000 100000
// ..."); ids below base (unmapped in the namespace) become the overflow
// id 65534, as the kernel shows them there.
func shiftIDs(line string, base int) string {
	f := strings.Fields(line)
	for i, v := range f {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
		case n >= base && n-base < 65536:
			f[i] = strconv.Itoa(n - base)
		default:
			f[i] = "65534"
		}
	}
	return strings.Join(f, " ")
}
