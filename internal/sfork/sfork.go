// Package sfork forks a live, frozen process — a template — into a new
// process that then finishes becoming a sandbox of its own, with no
// cooperation from the template: it works on any process, multi-threaded
// ones too (FreezeOptions.Threads: each fork re-creates the template's
// other threads in the child).
//
// # Algorithm
//
// Freeze seizes every thread of the template with ptrace (seccomp
// suspended, clone events traced), records each thread's state
// (ptrace.ThreadState; registers normalised so that a copy resumes by
// re-issuing the syscall it was blocked in), maps the batch executor
// (package ptrace), makes the template non-dumpable, clears
// MADV_DONTFORK from its mappings (a child must get all of them), kills
// whatever else lives in its PID namespace and, with CopyObjects,
// captures its event objects, pipes and shared memory (package kobj).
// The template then stays stopped for its whole life.
//
// Fork, per child, costs one sendmsg and two ptrace batches, plus one
// batch per other thread of a multi-threaded template:
//
//  1. The daemon sends the child's files (its I/O, the pidfd of the sandbox
//     env to join) over the fork channel, a unix socket whose other end the
//     template inherited but never reads.
//  2. Template batch: close the files the previous fork left in the
//     template, reap dead children (wait4 WNOHANG|__WALL until none), recvmsg
//     the files, clone(CLONE_NEWPID, exit signal 0) as a ForkPoint. The
//     template stops at once after the clone; the kernel reports the child
//     (auto-attached) by a clone event.
//  3. Child batch (the entries after the ForkPoint, run by the child on its
//     copy of the executor): raise capabilities it holds in its permitted
//     set, create its proc (fsopen/fsmount), setns into the env (one call
//     with a pidfd), chdir, attach the proc and mask it, dup2 its files
//     onto their final numbers and close the originals, close template fds
//     it must not keep, replace the template's event objects, pipes and
//     shared memory with fresh copies in the same state (CopyObjects),
//     re-create the template's other threads (clone3 with set_tid,
//     ptrace.AddThreadClones; they start stopped), drop capabilities. It
//     stops at the executor's final int3. Each re-created thread then runs
//     a batch of its own (ptrace.RestoreThreads: rseq, robust list,
//     sigaltstack, name, and the template thread's own capabilities
//     bounded by the child's) and gets its registers, xstate and signal
//     mask; all are released together. A template whose threads differ in
//     seccomp mode is refused (ptrace.SeccompError).
//  4. The caller's Ready hook (put the child in its cgroup: it must be
//     accounted before it runs any of the template's code) runs during
//     step 3, in parallel; once both are done the child gets the
//     template's saved registers and is detached: it resumes the
//     template's code where the template was frozen.
//
// Children are created with exit signal 0 so that their deaths send the
// template no SIGCHLD (which would stop it under ptrace); the next Fork
// reaps them. Forks of one template are serialised: the template runs one
// batch at a time.
//
// Seccomp: the template's filter is suspended while traced
// (PTRACE_O_SUSPEND_SECCOMP) so the injected setns/mount/clone work; the
// child inherits the filter, which applies again the moment it is detached.
package sfork

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/cleanup"
	"github.com/catalyzer/catalyzer/internal/kobj"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/timing"
)

// cgroupFD is where a fork batch puts the cgroup directory a child is
// born in (Child.IntoCgroup), in the template and the child alike: high,
// below the default RLIMIT_NOFILE of 1024.
const cgroupFD = 1000

// ErrTemplateDead is returned by Fork when the template has exited.
var ErrTemplateDead = errors.New("template is dead")

// Template is a frozen process that Fork copies.
type Template struct {
	tr     *ptrace.Tracer
	tracee *ptrace.Tracee
	pid    int
	regs   ptrace.Regs // normalised: children resume from these
	cwd    string

	chanFD int           // the template's fd of the fork channel
	conn   *net.UnixConn // our end

	killed []int // processes Freeze found beside the template and killed
	// threads are the template's other threads (multi-threaded templates,
	// FreezeOptions.Threads): their tracees, and their state each fork
	// gives back to the child's re-created threads.
	threads []*ptrace.Tracee
	states  []ptrace.ThreadState

	// objects are the template's event objects, pipes and shared
	// memory that each fork re-creates (FreezeOptions.CopyObjects).
	objects *kobj.Table

	mu   sync.Mutex
	held []int // fds the last fork received into the template
	dead bool
}

// Freeze seizes pid and keeps it stopped as a template. chanFD is the
// template's fd number of the fork channel whose other end is conn. The
// tracer must stay dedicated to templates of this process tree.
func Freeze(tr *ptrace.Tracer, pid int, conn *net.UnixConn, chanFD int) (*Template, error) {
	return FreezeWith(tr, pid, conn, chanFD, FreezeOptions{})
}

// FreezeOptions are Freeze's choices.
type FreezeOptions struct {
	// Threads accepts a multi-threaded template: every thread is frozen,
	// and each fork re-creates the other threads in the child (same
	// tids in its PID namespace, registers, xstate, TLS, signal mask,
	// clear_child_tid, robust list, rseq, sigaltstack). Without it a
	// multi-threaded process is refused (ptrace.ErrMultiThreaded).
	Threads bool
	// CopyObjects gives each fork its own copy of the template's
	// eventfds, timerfds, signalfds, epolls, in-process pipes and shared
	// anonymous memory (package kobj), captured once at the freeze, in
	// place of the template's. Skip lists the descriptors the caller
	// replaces or closes in every fork (stdio, its channels): they are
	// not looked at. Any other object forks would share refuses the
	// freeze (a *kobj.SharedError, errdefs.ErrNotSupported). Without
	// CopyObjects forks share whatever the template holds.
	CopyObjects bool
	Skip        []int
}

// FreezeWith is Freeze with options.
func FreezeWith(tr *ptrace.Tracer, pid int, conn *net.UnixConn, chanFD int, o FreezeOptions) (*Template, error) {
	t := &Template{tr: tr, pid: pid, conn: conn, chanFD: chanFD}
	cwd, err := procfs.Link(pid, "cwd")
	if err != nil {
		return nil, fmt.Errorf("freeze %d: %w", pid, err)
	}
	t.cwd = cwd
	g, err := tr.SeizeGroup(pid, ptrace.SuspendSeccomp(true), ptrace.TraceClone(true), ptrace.TraceFork(true), ptrace.ExitKill(true))
	if err != nil {
		return nil, fmt.Errorf("freeze %d: %w", pid, err)
	}
	if n := len(g.Threads); n > 1 && !o.Threads {
		g.Detach()
		return nil, fmt.Errorf("freeze %d: %w", pid, &ptrace.MultiThreadedError{Pid: pid, Threads: n})
	}
	states, err := g.States()
	if err == nil {
		t.tracee, t.regs, t.threads, t.states = g.Leader(), states[0].Regs, g.Threads[1:], states[1:]
		err = ptrace.SameSeccomp(states)
	}
	if err == nil {
		// Non-dumpable: only CAP_SYS_PTRACE (the daemon) may open its
		// memory, not a process with its credentials (defence in depth:
		// none is left, see below). Forks inherit it.
		b := ptrace.NewBatch()
		b.Add(unix.SYS_PRCTL, ptrace.Lit(unix.PR_SET_DUMPABLE), ptrace.Lit(0), ptrace.Lit(0), ptrace.Lit(0), ptrace.Lit(0))
		// A mapping marked MADV_DONTFORK (VM_DONTCOPY) would be missing
		// from every child: V8 marks its whole heap so (to keep it out of
		// child_process forks), and a forked Node then faults on its first
		// object. Forks are copies of all of the template.
		var es []procfs.SmapsEntry
		if es, err = procfs.Smaps(pid); err == nil {
			for _, e := range es {
				if e.HasFlag("dc") {
					b.Add(unix.SYS_MADVISE, ptrace.Lit(int64(e.Start)), ptrace.Lit(int64(e.End-e.Start)), ptrace.Lit(unix.MADV_DOFORK))
				}
			}
			_, err = t.tracee.Exec(b)
		}
	}
	if err != nil {
		g.Detach()
		return nil, fmt.Errorf("freeze %d: %w", pid, err)
	}
	// The template must be alone in its PID namespace from now on: a
	// process its code left running (a fork at import, say) would share
	// its credentials, could patch the memory our batches run from, and
	// would see every fork nested in that namespace. It is stopped, so
	// nothing new appears but what the others fork while we kill them.
	if t.killed, err = killOthers(pid); err != nil {
		t.Close()
		return nil, fmt.Errorf("freeze %d: %w", pid, err)
	}
	if o.CopyObjects {
		// Frozen and alone: nothing changes the objects from now on.
		if t.objects, err = kobj.Capture(pid, o.Skip); err != nil {
			t.Close()
			return nil, fmt.Errorf("freeze %d: %w", pid, err)
		}
	}
	return t, nil
}

// Threads are the template's other threads as Freeze recorded them
// (stopped since: forks run batches in the main thread only), for a
// checkpoint of the template (image.Options.Threads). Shared, do not
// modify.
func (t *Template) Threads() []ptrace.ThreadState { return t.states }

// Killed lists the processes Freeze found in the template's PID namespace
// beside the template itself and killed (their host pids).
func (t *Template) Killed() []int { return append([]int(nil), t.killed...) }

// killOthers SIGKILLs every process in pid's PID namespace but pid, until
// a scan of /proc finds none.
func killOthers(pid int) ([]int, error) {
	self, err := procfs.NSLink(pid, "pid")
	if err != nil {
		return nil, fmt.Errorf("pid namespace: %w", err)
	}
	if ours, err := procfs.NSLink(procfs.Self, "pid"); err != nil || ours == self {
		// A template in our own PID namespace (a plain process frozen
		// by a test or a one-shot command) has no namespace of its own
		// to empty: everything else there is ours, not its.
		return nil, err
	}
	var killed []int
	seen := map[int]bool{} // killed already: dying, or a zombie the template reaps later
	for range 100 {
		pids, err := procfs.PIDs()
		if err != nil {
			return killed, err
		}
		found := 0
		for _, n := range pids {
			if n == pid || seen[n] {
				continue
			}
			if ns, err := procfs.NSLink(n, "pid"); err != nil || ns != self {
				continue
			}
			if unix.Kill(n, unix.SIGKILL) == nil {
				found++
				seen[n] = true
				killed = append(killed, n)
			}
		}
		if found == 0 {
			return killed, nil
		}
	}
	return killed, fmt.Errorf("processes beside the template keep appearing in its PID namespace")
}

// Objects are the kernel objects each fork re-creates (CopyObjects), nil
// without.
func (t *Template) Objects() *kobj.Table { return t.objects }

// Pid is the template's host pid.
func (t *Template) Pid() int { return t.pid }

// Cwd is the template's working directory (in its own root).
func (t *Template) Cwd() string { return t.cwd }

// Caps is a capability set for capset(2): bit n is capability n.
type Caps struct{ Effective, Permitted, Inheritable uint64 }

// Mount is one mount(2) call the child makes after joining its env.
type Mount struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
	// Optional mounts may fail (a path this kernel does not have).
	Optional bool
}

// Dup puts received file Files[File] on fd Target in the child,
// close-on-exec if CloseOnExec (dup3 O_CLOEXEC: the dup itself clears the
// flag the received file had).
type Dup struct {
	File, Target int
	CloseOnExec  bool
}

// Child says what the child must do before it runs the template's code.
type Child struct {
	// Files are sent to the template (and so to the child) in order.
	Files []*os.File
	// Dups place received files on their final numbers; every received
	// file is closed at its original number afterwards.
	Dups []Dup
	// Join is the index in Files of a pidfd whose namespaces
	// (JoinFlags) the child enters; -1 for none.
	Join      int
	JoinFlags int
	// NewPID makes the child PID 1 of a new PID namespace.
	NewPID bool
	// Cgroup, if set, is a cgroup v2 directory the child is born in
	// (clone3 CLONE_INTO_CGROUP): what its creation charges (page tables,
	// kernel stack) is that cgroup's, not the template's. It is sent after
	// Files.
	Cgroup *os.File
	// Chdir, when set, is the child's working directory after the join
	// (a join resets it to the new root).
	Chdir string
	// ProcFS, when set, is where the child gets a proc file system of its
	// own PID namespace in the joined env (its Mounts then mask it). The
	// proc is created (fsopen, fsmount) before the join and attached
	// (move_mount) after it: in a user namespace the kernel lets a proc
	// be mounted only where a fully visible proc already is, which the
	// template's mount namespace has and a pre-built env does not.
	ProcFS string
	// Mounts run after the join and chdir.
	Mounts []Mount
	// ReadOnlyRoot gives the child a mount namespace of its own in which
	// every mount is read-only (unshare, then one recursive
	// mount_setattr): a child that joins no env cannot write what the
	// template and its other forks see.
	ReadOnlyRoot bool
	// Close lists template fds the child must not keep.
	Close []int
	// Raise, if set, is applied before the join (to raise what the join
	// needs from the permitted set); DropBounding and Final at the end.
	Raise        *Caps
	DropBounding []int
	Final        *Caps
	// Ready runs while the child runs its setup batch, and must be done
	// before the child runs any template code (e.g. put it in its
	// cgroup). An error kills the child.
	Ready func(pid int) error
}

// Forked describes a successful fork.
type Forked struct {
	Pid        int // host pid of the child
	Phases     []timing.Phase
	RoundTrips uint64 // ptrace stops, template and child together
}

// Fork copies the template into a new child set up by c. On error nothing
// of the child survives and the template is as before.
func (t *Template) Fork(c Child) (Forked, error) {
	t.mu.Lock()
	out, err := t.fork(c)
	// The template holds the child's files since its recvmsg: close them
	// (off the child's path when it worked: the child is running), or the
	// child's peers would never see EOF when it dies. The next Fork waits
	// for this.
	if err != nil {
		t.closeHeld()
		t.mu.Unlock()
		return out, err
	}
	go func() {
		defer t.mu.Unlock()
		t.closeHeld()
	}()
	return out, nil
}

// fork is Fork with t.mu held.
func (t *Template) fork(c Child) (Forked, error) {
	if t.dead {
		return Forked{}, fmt.Errorf("fork %d: %w", t.pid, ErrTemplateDead)
	}
	f := &forking{c: c, ready: make(chan error, 1)}
	clock := timing.Start()
	f.phase = func(name string) { clock.Mark(name); f.out.Phases = clock.Phases }
	// Whatever there is of the child when a step fails dies here.
	undo := cleanup.Make(func() { t.killChild(f.child, f.orphans) })
	defer undo.Clean()

	// 1. Files over the fork channel.
	var err error
	if f.sent, err = t.sendFiles(c); err != nil {
		return Forked{}, fmt.Errorf("fork %d: %w", t.pid, err)
	}
	f.phase("send")
	// 2. The fork batch: the template clones, the child sets itself up.
	if err := t.tr.Do(func() error { return t.cloneChild(f) }); err != nil {
		return Forked{}, fmt.Errorf("fork %d: %w", t.pid, err)
	}
	f.out.Pid = f.child.Pid()
	// 3. Ready, then the child runs the template's code.
	if err := <-f.ready; err != nil {
		return Forked{}, fmt.Errorf("fork %d: child %d: %w", t.pid, f.out.Pid, err)
	}
	f.phase("ready")
	err = t.tr.Do(func() error {
		if err := f.child.SetRegs(t.regs); err != nil {
			return err
		}
		return f.child.Detach()
	})
	if err != nil {
		return Forked{}, fmt.Errorf("fork %d: resume child %d: %w", t.pid, f.out.Pid, err)
	}
	f.phase("resume")
	undo.Release()
	return f.out, nil
}

// forking is one fork under way: what it reports, and what there is of
// the child to kill should it fail.
type forking struct {
	c     Child
	out   Forked
	phase func(name string) // marks a phase in out
	sent  int               // files sent to the template, the cgroup's included

	child   *ptrace.Tracee // once attached
	orphans []int          // threads a failed child batch re-created
	ready   chan error     // c.Ready's result, once the child runs its batch
}

// sendFiles sends c's files, then its cgroup, to the template over the
// fork channel, and returns how many it sent.
func (t *Template) sendFiles(c Child) (int, error) {
	fds := make([]int, len(c.Files))
	for i, f := range c.Files {
		fds[i] = int(f.Fd())
	}
	if c.Cgroup != nil {
		fds = append(fds, int(c.Cgroup.Fd()))
	}
	if _, _, err := t.conn.WriteMsgUnix([]byte{'F'}, unix.UnixRights(fds...), nil); err != nil {
		return 0, fmt.Errorf("send files: %w", err)
	}
	return len(fds), nil
}

// cloneChild runs the fork batch on the tracer thread: the template's
// part, which clones the child, then, once f has the child attached, the
// child's part.
func (t *Template) cloneChild(f *forking) error {
	b, cbuf, msg := t.batch(f.c)
	pid, err := t.runTemplate(f, b, cbuf, msg)
	if err != nil {
		return err
	}
	f.phase("clone")
	f.child, err = t.tracee.Adopt(pid)
	if err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("attach child %d: %w", pid, err)
	}
	f.phase("attach")
	return t.setUpChild(f, b)
}

// runTemplate runs the template's part of b: it receives f's files (and
// holds them from then on: t.held) and clones. It returns the child's
// pid.
func (t *Template) runTemplate(f *forking, b *ptrace.Batch, cbuf, msg ptrace.Arg) (int, error) {
	before := t.tracee.RoundTrips()
	res, err := t.tracee.Exec(b)
	f.out.RoundTrips += t.tracee.RoundTrips() - before
	if err != nil {
		if errors.Is(err, ptrace.ErrExited) || gone(t.pid) {
			t.dead = true
			return 0, fmt.Errorf("%w: %w", ErrTemplateDead, err)
		}
		return 0, fmt.Errorf("template batch: %w", err)
	}
	if flags := binary.LittleEndian.Uint32(res.Data(msg, ptrace.MsghdrSize)[ptrace.MsghdrFlags:]); flags&unix.MSG_CTRUNC != 0 {
		return 0, fmt.Errorf("template batch: received files truncated (MSG_CTRUNC)")
	}
	held := res.Data(cbuf, unix.CmsgSpace(4*f.sent))
	t.held = t.held[:0]
	for i := 0; i < f.sent; i++ {
		t.held = append(t.held, int(int32(binary.LittleEndian.Uint32(held[unix.CmsgLen(0)+4*i:]))))
	}
	if f.c.Cgroup != nil {
		t.held = append(t.held, cgroupFD)
	}
	if res.Status != ptrace.StatusForkParent || len(res.Children) != 1 {
		return 0, fmt.Errorf("template batch ended with %v and children %v, want a fork parent with one child", res.Status, res.Children)
	}
	return res.Children[0], nil
}

// setUpChild runs the child's part of b, with c.Ready alongside, then
// gives the threads it re-created their states.
func (t *Template) setUpChild(f *forking, b *ptrace.Batch) error {
	child := f.child
	// Ready (cgroup attach) runs while the child runs its setup
	// batch: both must be done before it runs template code.
	if ready, fn := f.ready, f.c.Ready; fn != nil {
		pid := child.Pid()
		go func() { ready <- fn(pid) }()
	} else {
		ready <- nil
	}
	before := child.RoundTrips()
	cres, err := child.Resume(b)
	f.out.RoundTrips += child.RoundTrips() - before
	if err != nil {
		<-f.ready
		if cres != nil {
			// Threads the batch re-created before it failed: traced,
			// their deaths come to us, and the child's only after.
			f.orphans = cres.Children
		}
		return fmt.Errorf("child %d setup: %w", child.Pid(), err)
	}
	f.phase("join")
	if len(t.states) == 0 {
		return nil
	}
	threads, err := child.RestoreThreads(t.states, cres.Children, ptrace.ThreadSetup{Limit: f.c.threadCaps()})
	if err == nil {
		err = threads.Release()
	}
	if err != nil {
		<-f.ready
		return fmt.Errorf("child %d threads: %w", child.Pid(), err)
	}
	f.phase("threads")
	return nil
}

// Reap collects the template's dead children (forks that exited): their
// zombies otherwise wait for the next Fork, which reaps them too.
func (t *Template) Reap() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dead || t.tracee == nil {
		return nil
	}
	b := ptrace.NewBatch()
	b.Add(unix.SYS_WAIT4, ptrace.Lit(-1), ptrace.Lit(0), ptrace.Lit(unix.WNOHANG|unix.WALL), ptrace.Lit(0)).
		With(ptrace.RepeatWhilePositive | ptrace.IgnoreError)
	return t.tr.Do(func() error {
		_, err := t.tracee.Exec(b)
		return err
	})
}

// closeHeld closes, in the template, the files the last fork received.
// Called with t.mu held.
func (t *Template) closeHeld() {
	if len(t.held) == 0 || t.dead {
		return
	}
	b := ptrace.NewBatch()
	for _, fd := range t.held {
		b.Add(unix.SYS_CLOSE, ptrace.Lit(int64(fd))).With(ptrace.IgnoreError)
	}
	t.held = t.held[:0]
	t.tr.Do(func() error {
		if _, err := t.tracee.Exec(b); errors.Is(err, ptrace.ErrExited) {
			t.dead = true
		}
		return nil
	})
}

// killChild kills a child whose fork failed and reaps it, with the
// traced threads its batch had re-created (threads): a leader's death is
// reported only once they are reaped.
func (t *Template) killChild(child *ptrace.Tracee, threads []int) {
	if child == nil {
		return
	}
	unix.Kill(child.Pid(), unix.SIGKILL)
	t.tr.Do(func() error {
		ptrace.ReapKilled(append([]int{child.Pid()}, threads...), 5*time.Second)
		return nil
	})
}

// batch builds the fork batch: the template's part, the ForkPoint, the
// child's part. It returns the batch and the data-area arguments holding
// the received control message and the msghdr.
func (t *Template) batch(c Child) (b *ptrace.Batch, cbuf, msg ptrace.Arg) {
	b = ptrace.NewBatch()
	t.addLeftovers(b)
	r := t.addReceive(b, c)
	addClone(b, c, r)

	// The child.
	addJoin(b, c, r)
	addFiles(b, c, r)
	// Fresh copies of the template's event objects, pipes and shared
	// memory, after the dups: an epoll that watched the control channel
	// watches the child's own.
	if t.objects != nil {
		t.objects.AddTo(b)
	}
	// The template's other threads, re-created with their tids (set_tid
	// needs CAP_CHECKPOINT_RESTORE, held until the drop below; each new
	// thread drops it in its own batch). They start stopped (traced
	// clone), and fork gives each its state before it runs.
	threads := ptrace.AddThreadClones(b, t.states)
	addDrop(b, c)

	t.setPointers(b, r, threads)
	return b, r.cbuf, r.msg
}

// received is where the fork batch's recvmsg puts the child's files, in
// its data area.
type received struct {
	n     int        // files received, the cgroup's included
	iobuf ptrace.Arg // the one byte of the message
	cbuf  ptrace.Arg // the control message: the fds
	iov   ptrace.Arg
	msg   ptrace.Arg
}

// fd is the argument that loads the number of received file i.
func (r received) fd(i int) ptrace.Arg { return ptrace.Load32(r.cbuf, unix.CmsgLen(0)+4*i) }

// addLeftovers adds to b, for the template, the closing of files the last
// fork left it holding and the reaping of forks that exited.
func (t *Template) addLeftovers(b *ptrace.Batch) {
	for _, fd := range t.held {
		b.Add(unix.SYS_CLOSE, ptrace.Lit(int64(fd))).With(ptrace.IgnoreError)
	}
	b.Add(unix.SYS_WAIT4, ptrace.Lit(-1), ptrace.Lit(0), ptrace.Lit(unix.WNOHANG|unix.WALL), ptrace.Lit(0)).
		With(ptrace.RepeatWhilePositive | ptrace.IgnoreError)
}

// addReceive adds to b the template's recvmsg of c's files on the fork
// channel, into space it reserves in b's data area.
func (t *Template) addReceive(b *ptrace.Batch, c Child) received {
	r := received{n: len(c.Files)}
	if c.Cgroup != nil {
		r.n++
	}
	r.iobuf = b.Space(8)
	r.cbuf = b.Space(unix.CmsgSpace(4 * r.n))
	r.iov = b.Space(ptrace.IovecSize)
	r.msg = b.Space(ptrace.MsghdrSize)
	b.Add(unix.SYS_RECVMSG, ptrace.Lit(int64(t.chanFD)), r.msg, ptrace.Lit(unix.MSG_CMSG_CLOEXEC))
	return r
}

// addClone adds to b the ForkPoint: a clone with c's PID namespace, into
// c's cgroup (clone3) if it has one.
func addClone(b *ptrace.Batch, c Child, r received) {
	flags := int64(0) // exit signal 0: no SIGCHLD to the frozen template
	if c.NewPID {
		flags |= unix.CLONE_NEWPID
	}
	if c.Cgroup == nil {
		b.Add(unix.SYS_CLONE, ptrace.Lit(flags), ptrace.Lit(0), ptrace.Lit(0), ptrace.Lit(0), ptrace.Lit(0)).With(ptrace.ForkPoint)
		return
	}
	// clone3 reads the cgroup fd from its struct, where no run-time
	// relocation reaches: put the received fd on a fixed number.
	b.Add(unix.SYS_DUP2, r.fd(len(c.Files)), ptrace.Lit(cgroupFD))
	args := ptrace.CloneArgs{Flags: uint64(flags | unix.CLONE_INTO_CGROUP), Cgroup: cgroupFD}.Bytes()
	b.Add(unix.SYS_CLONE3, b.Bytes(args), ptrace.Lit(ptrace.CloneArgsSize)).With(ptrace.ForkPoint)
}

// addJoin adds to b the child's way into its env: the raised
// capabilities, the join, the working directory, its proc, its mounts
// and a read-only root.
func addJoin(b *ptrace.Batch, c Child, r received) {
	if c.Raise != nil {
		AddCapset(b, *c.Raise)
	}
	var procMnt ptrace.Ref
	if c.ProcFS != "" {
		fsfd := b.Add(unix.SYS_FSOPEN, b.String("proc"), ptrace.Lit(unix.FSOPEN_CLOEXEC))
		b.Add(unix.SYS_FSCONFIG, fsfd.Result(), ptrace.Lit(unix.FSCONFIG_CMD_CREATE), ptrace.Lit(0), ptrace.Lit(0), ptrace.Lit(0))
		procMnt = b.Add(unix.SYS_FSMOUNT, fsfd.Result(), ptrace.Lit(unix.FSMOUNT_CLOEXEC),
			ptrace.Lit(unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC))
		b.Add(unix.SYS_CLOSE, fsfd.Result())
	}
	if c.Join >= 0 {
		b.Add(unix.SYS_SETNS, r.fd(c.Join), ptrace.Lit(int64(c.JoinFlags)))
	}
	if c.Chdir != "" {
		b.Add(unix.SYS_CHDIR, b.String(c.Chdir))
	}
	if c.ProcFS != "" {
		b.Add(unix.SYS_MOVE_MOUNT, procMnt.Result(), b.String(""), ptrace.Lit(unix.AT_FDCWD), b.String(c.ProcFS),
			ptrace.Lit(unix.MOVE_MOUNT_F_EMPTY_PATH))
		b.Add(unix.SYS_CLOSE, procMnt.Result())
	}
	for _, m := range c.Mounts {
		AddMount(b, m)
	}
	if c.ReadOnlyRoot {
		b.Add(unix.SYS_UNSHARE, ptrace.Lit(unix.CLONE_NEWNS))
		attr := make([]byte, 32) // struct mount_attr: attr_set = MOUNT_ATTR_RDONLY
		binary.LittleEndian.PutUint64(attr, unix.MOUNT_ATTR_RDONLY)
		b.Add(unix.SYS_MOUNT_SETATTR, ptrace.Lit(unix.AT_FDCWD), b.String("/"), ptrace.Lit(unix.AT_RECURSIVE), b.Bytes(attr), ptrace.Lit(32))
	}
}

// addFiles adds to b the child's fd moves: the received files onto their
// numbers (c.Dups), then every received file, c.Close and the cgroup's
// fixed number closed.
func addFiles(b *ptrace.Batch, c Child, r received) {
	for _, d := range c.Dups {
		if d.CloseOnExec {
			b.Add(unix.SYS_DUP3, r.fd(d.File), ptrace.Lit(int64(d.Target)), ptrace.Lit(unix.O_CLOEXEC))
		} else {
			b.Add(unix.SYS_DUP2, r.fd(d.File), ptrace.Lit(int64(d.Target)))
		}
	}
	for i := 0; i < r.n; i++ {
		b.Add(unix.SYS_CLOSE, r.fd(i)).With(ptrace.IgnoreError)
	}
	for _, fd := range c.Close {
		b.Add(unix.SYS_CLOSE, ptrace.Lit(int64(fd))).With(ptrace.IgnoreError)
	}
	if c.Cgroup != nil {
		b.Add(unix.SYS_CLOSE, ptrace.Lit(cgroupFD)).With(ptrace.IgnoreError)
	}
}

// addDrop adds to b the child's final capability drop: the bounding set,
// then its capability sets.
func addDrop(b *ptrace.Batch, c Child) {
	for _, cp := range c.DropBounding {
		b.Add(unix.SYS_PRCTL, ptrace.Lit(unix.PR_CAPBSET_DROP), ptrace.Lit(int64(cp)))
	}
	if c.Final != nil {
		AddCapset(b, *c.Final)
	}
}

// setPointers fills in the pointers inside the msghdr and iovec and the
// threads' tid pointers: addresses in the tracee, known once every entry
// is in b.
func (t *Template) setPointers(b *ptrace.Batch, r received, threads []ptrace.ThreadClone) {
	must := func(a ptrace.Arg) uint64 {
		addr, err := t.tracee.DataAddr(b, a)
		if err != nil {
			panic(err) // the executor is installed by Freeze
		}
		return uint64(addr)
	}
	b.SetBytes(r.iov, ptrace.Iovec(must(r.iobuf), 1))
	b.SetBytes(r.msg, ptrace.Msghdr(must(r.iov), 1, must(r.cbuf), uint64(unix.CmsgSpace(4*r.n))))
	for _, th := range threads {
		th.SetTIDPointer(b, must(th.TID))
	}
}

// threadCaps bounds the capabilities of the child's re-created threads
// as its batch bounds its own (DropBounding, Final); nil if it does not.
func (c Child) threadCaps() *ptrace.ThreadCaps {
	if c.Final == nil && len(c.DropBounding) == 0 {
		return nil
	}
	l := ptrace.AllCaps
	if c.Final != nil {
		l.Effective, l.Permitted, l.Inheritable = c.Final.Effective, c.Final.Permitted, c.Final.Inheritable
	}
	for _, cp := range c.DropBounding {
		l.Bounding &^= 1 << cp
	}
	return &l
}

// AddMount adds mount(2) as m describes to b.
func AddMount(b *ptrace.Batch, m Mount) {
	args := []ptrace.Arg{b.String(m.Source), b.String(m.Target), b.String(m.FSType), ptrace.Lit(int64(m.Flags)), ptrace.Lit(0)}
	if m.Data != "" {
		args[4] = b.String(m.Data)
	}
	ref := b.Add(unix.SYS_MOUNT, args...)
	if m.Optional {
		ref.With(ptrace.IgnoreError)
	}
}

// AddCapset adds capset(2) with caps to b (version 3: two 32-bit halves).
func AddCapset(b *ptrace.Batch, c Caps) {
	ptrace.AddCapset(b, c.Effective, c.Permitted, c.Inheritable)
}

// WithTracee runs f with the frozen template's tracee, on its tracer
// thread, between forks (to checkpoint it).
func (t *Template) WithTracee(f func(*ptrace.Tracee) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dead || t.tracee == nil {
		return fmt.Errorf("template %d: %w", t.pid, ErrTemplateDead)
	}
	return t.tr.Do(func() error { return f(t.tracee) })
}

// Close kills and reaps the template (it must not outlive its forks'
// engine). Children already forked live on.
func (t *Template) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tracee == nil {
		return nil
	}
	unix.Kill(t.pid, unix.SIGKILL)
	// Reap it from the tracer thread (the tracee is stopped as far as the
	// ptrace layer knows, so wait for its death directly). A template our
	// process did not start is not ours to reap (ECHILD).
	err := t.tr.Do(func() error {
		// Every traced thread reports its own death, and the leader's
		// only comes once the others are reaped.
		tids := []int{t.pid}
		for _, th := range t.threads {
			tids = append(tids, th.Pid())
		}
		if left := ptrace.ReapKilled(tids, 5*time.Second); len(left) > 0 {
			return fmt.Errorf("close template %d: threads %v not reaped", t.pid, left)
		}
		return nil
	})
	t.tracee, t.dead = nil, true
	t.conn.Close()
	return err
}

// gone reports whether pid has exited (a zombie or reaped).
func gone(pid int) bool {
	st, err := procfs.Stat(pid)
	if err != nil || st.Exited() {
		return true
	}
	// Exiting but not yet a zombie: its memory is already gone.
	maps, err := procfs.Maps(pid)
	return err != nil || len(maps) == 0
}

// Alive reports whether the template is still there to fork.
func (t *Template) Alive() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.dead && !gone(t.pid)
}
