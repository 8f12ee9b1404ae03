package image

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/pause"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/timing"
)

// RestoreOptions say what Restore restores into and how. The restorer is
// the process an image is restored into: a minimal single-threaded
// process (StartRestorer runs RestorerBinary) seized and stopped by the
// caller on the tracer that Restore is given (Tracee).
type RestoreOptions struct {
	Tracee *ptrace.Tracee
	// Reconnect maps each fd the image declared "reconnect" to the fd
	// number, in the restorer, of the descriptor that takes its place.
	Reconnect map[int]int
	// Prefetch reads the image's working set (ws.bin) in one sequential
	// pass before the plan runs and populates those pages in the restored
	// process (MADV_POPULATE_READ), so that they do not fault one by one.
	Prefetch bool
	// KeepExecutor leaves the executor region mapped in the restored
	// process (saves two round trips; the platform may reuse it).
	KeepExecutor bool
	// PagesPath is where the restorer opens pages.img ("" = the image's
	// own path on the host): a restorer inside a sandbox sees it elsewhere.
	PagesPath string
	// Prelude runs in the restorer before the plan (join a sandbox env);
	// Epilogue after it, before the registers are loaded (drop
	// capabilities, install the seccomp filter). Each is one more round
	// trip. Epilogue may hold pointers into its own data area: it is
	// handed the tracee so it can patch them (Tracee.DataAddr).
	Prelude  *ptrace.Batch
	Epilogue func(t *ptrace.Tracee) (*ptrace.Batch, error)
	// ThreadCaps bounds the capabilities of the re-created threads (each
	// gets its recorded ones Within it; nil: their own), as Epilogue
	// bounds the main thread's. Seccomp filters and no_new_privs are per
	// thread too: an Epilogue that installs a filter must sync it to the
	// threads (SECCOMP_FILTER_FLAG_TSYNC), which exist by then.
	ThreadCaps *ptrace.ThreadCaps
}

// Stats describes a restore.
type Stats struct {
	Phases     []timing.Phase
	RoundTrips uint64 // ptrace stops
	Entries    int    // plan entries run
	Total      time.Duration
}

var (
	kernelOnce sync.Once
	kernelStr  string
)

// Restore runs img's plan in the restorer, then a batch that re-creates
// its event objects and pipes (img.Objects), and lets it go: the process
// resumes exactly where the checkpointed one was frozen. It returns the
// restored pid (the restorer's; see StartRestorerAsPid). The plan
// re-creates the image's other threads with their tids (the restorer must
// trace clones, as StartRestorer's do); each is given its state
// (ptrace.RestoreThreads, with the image's credentials) after the
// Epilogue, and all are released together just before the main thread.
// A tid taken in the restorer's PID namespace (a restorer that is not
// alone in a fresh one) is an error wrapping ErrPidTaken and
// errdefs.ErrConflict that names it. On error the restorer is killed.
func Restore(tr *ptrace.Tracer, img *Image, r RestoreOptions) (pid int, st Stats, err error) {
	t := r.Tracee
	if t == nil {
		return 0, st, fmt.Errorf("restore: no restorer: %w", errdefs.ErrInvalid)
	}
	pid = t.Pid()
	start := time.Now()
	clock := timing.Start()
	phase := func(name string) { clock.Mark(name); st.Phases = clock.Phases }
	defer func() {
		st.Total = time.Since(start)
		if err != nil {
			unix.Kill(pid, unix.SIGKILL)
			t.Detach()
			err = fmt.Errorf("restore %s into %d: %w", img.Dir, pid, err)
		}
	}()
	if err := img.checkRestorable(t); err != nil {
		return pid, st, err
	}
	batches := img.clonePlans()
	b := batches[len(batches)-1]
	rvdso, err := restorerVDSO(pid)
	if err != nil {
		return pid, st, err
	}
	phase("prepare")

	if r.Prefetch && len(img.WorkingSet) > 0 {
		if err := img.prefetch(); err != nil {
			return pid, st, err
		}
		img.addPopulate(b, img.WorkingSet)
		phase("prefetch")
	}

	run := &restoreRun{img: img, t: t, r: r, st: &st, phase: phase}
	before := t.RoundTrips()
	err = tr.Do(func() error {
		res, err := run.build(batches, rvdso)
		if err != nil {
			return err
		}
		return run.resume(res, before)
	})
	return pid, st, err
}

// restoreRun is what the steps of one Restore that run in the restorer
// share: the restorer, the options, and the Stats they fill in.
type restoreRun struct {
	img   *Image
	t     *ptrace.Tracee
	r     RestoreOptions
	st    *Stats
	phase func(name string)
}

// build makes the image's process in the restorer, still stopped: the
// executor, the caller's Prelude, the relocated plan, then the objects. It
// returns the results of the plan's last batch (the thread clones').
func (run *restoreRun) build(batches []*ptrace.Batch, rvdso uint64) (*ptrace.Results, error) {
	img, t, r := run.img, run.t, run.r
	if err := t.InstallExecutorAt(img.ExecAddr()); err != nil {
		return nil, err
	}
	run.phase("executor")
	if r.Prelude != nil {
		if _, err := t.Exec(r.Prelude); err != nil {
			return nil, fmt.Errorf("prelude: %w", err)
		}
		run.phase("prelude")
	}
	if err := img.relocate(t, batches, rvdso, r); err != nil {
		return nil, err
	}
	run.phase("relocate")
	res, n, err := img.runPlan(t, batches)
	run.st.Entries += n
	if err != nil {
		return nil, err
	}
	run.phase("plan")
	if img.Objects != nil && (len(img.Objects.Objects) > 0 || len(img.Objects.Memory) > 0) {
		n, err := img.recreateObjects(t, t.Pid())
		if err != nil {
			return nil, err
		}
		run.st.Entries += n
		run.phase("objects")
	}
	return res, nil
}

// resume finishes the built process and lets it go: the caller's
// Epilogue, the threads' state (res gives their tids), timers and
// signals, the main thread's registers, then the executor's removal, the
// threads' release and the detach. before is the round-trip count at the
// start, for Stats. The re-created threads are this step's to undo: on an
// error it kills them (the restorer is Restore's).
func (run *restoreRun) resume(res *ptrace.Results, before uint64) (err error) {
	img, t, r := run.img, run.t, run.r
	if r.Epilogue != nil {
		if err := runEpilogue(t, r.Epilogue); err != nil {
			return err
		}
		run.phase("epilogue")
	}
	var threads *ptrace.Recreated
	if len(img.Threads) > 0 {
		if threads, err = t.RestoreThreads(img.Threads, res.Children, ptrace.ThreadSetup{Extra: img.credentials, Limit: r.ThreadCaps}); err != nil {
			return fmt.Errorf("threads: %w", err)
		}
		defer func() {
			if threads != nil { // not released: an error below
				threads.Kill()
			}
		}()
		run.phase("threads")
	}
	if len(img.Timers) > 0 || len(img.Signals) > 0 {
		if err := img.restoreTimersSignals(t, t.Pid()); err != nil {
			return err
		}
		run.phase("timers")
	}
	if err := img.loadRegisters(t); err != nil {
		return err
	}
	run.phase("registers")
	if !r.KeepExecutor {
		if err := t.RemoveExecutor(); err != nil {
			return err
		}
		run.phase("remove-executor")
	}
	if threads != nil {
		if err := threads.Release(); err != nil {
			return err
		}
		threads = nil
	}
	run.st.RoundTrips = t.RoundTrips() - before
	if err := t.Detach(); err != nil {
		return err
	}
	run.phase("detach")
	return nil
}

// checkRestorable refuses, before anything runs in the restorer, an image
// that this kernel or this restorer cannot take.
func (img *Image) checkRestorable(t *ptrace.Tracee) error {
	kernelOnce.Do(func() { kernelStr = kernelID() })
	if k := cstring(img.hdr.Kernel[:]); k != kernelStr {
		return fmt.Errorf("image taken on kernel %q, this is %q (the vDSO layout may differ): %w", k, kernelStr, errdefs.ErrNotSupported)
	}
	if len(img.plans) == 0 {
		return fmt.Errorf("image has no plan: %w", errdefs.ErrInvalid)
	}
	if len(img.Threads) > 0 && !t.TracesClones() {
		return fmt.Errorf("the image has %d threads to re-create, the restorer does not trace clones: %w", len(img.Threads), errdefs.ErrInvalid)
	}
	return nil
}

// clonePlans copies the image's plan batches: relocation patches the
// copies, so the image can be restored again.
func (img *Image) clonePlans() []*ptrace.Batch {
	batches := make([]*ptrace.Batch, len(img.plans))
	for i, pb := range img.plans {
		batches[i] = pb.Clone()
	}
	return batches
}

// restorerVDSO is the address of the restorer's vDSO (0: it has none),
// which RelocVDSO entries are relative to.
func restorerVDSO(pid int) (uint64, error) {
	auxv, err := procfs.Auxv(pid)
	if err != nil {
		return 0, err
	}
	rvdso, _ := procfs.AuxvValue(auxv, procfs.AtSysinfoEhdr)
	return rvdso, nil
}

// relocate patches the plan's batches with what only the restorer knows:
// its vDSO, the descriptors that replace reconnected fds, the path of
// pages.img as it sees it, and the addresses of the batches' data.
func (img *Image) relocate(t *ptrace.Tracee, batches []*ptrace.Batch, rvdso uint64, r RestoreOptions) error {
	for _, rl := range img.Relocs {
		b := batches[rl.Batch]
		switch rl.Kind {
		case RelocVDSO:
			if rvdso == 0 {
				return fmt.Errorf("restorer has no vDSO")
			}
			b.SetArg(int(rl.Entry), int(rl.Arg), rvdso+rl.Value)
		case RelocFD:
			fd, ok := r.Reconnect[int(rl.Value)]
			if !ok {
				return fmt.Errorf("image fd %d must be reconnected: no descriptor given: %w", rl.Value, errdefs.ErrInvalid)
			}
			b.SetArg(int(rl.Entry), int(rl.Arg), uint64(fd))
		case RelocPagesPath:
			p, err := filepath.Abs(filepath.Join(img.Dir, PagesFile))
			if err != nil {
				return err
			}
			if r.PagesPath != "" {
				p = r.PagesPath
			}
			if uint64(len(p)) >= rl.Value {
				return fmt.Errorf("path %q longer than %d bytes: %w", p, rl.Value-1, errdefs.ErrInvalid)
			}
			b.SetBytes(b.DataAt(int(rl.DataOff)), append([]byte(p), 0))
		case RelocDataPtr:
			addr, err := t.DataAddr(b, b.DataAt(int(rl.Value)))
			if err != nil {
				return err
			}
			b.SetBytes(b.DataAt(int(rl.DataOff)), binary.LittleEndian.AppendUint64(nil, uint64(addr)))
		}
	}
	return nil
}

// runPlan runs the relocated plan: the memory batches first, if the plan
// has more than one; the last holds the rest (and the thread clones,
// whose children its results give). It returns the last batch's results
// and the number of entries run, also on error.
func (img *Image) runPlan(t *ptrace.Tracee, batches []*ptrace.Batch) (*ptrace.Results, int, error) {
	n := 0
	for _, mb := range batches[:len(batches)-1] {
		if _, err := t.Exec(mb); err != nil {
			return nil, n, fmt.Errorf("plan: %w", err)
		}
		n += mb.Len()
	}
	b := batches[len(batches)-1]
	res, err := t.Exec(b)
	if err != nil {
		return nil, n, img.planError(b, err)
	}
	return res, n + b.Len(), nil
}

// recreateObjects re-creates the shared memory, event objects and pipes
// from objects.bin: a batch of our own making (kobj.AddTo of the
// validated table), not the plan's. It returns the entries it ran.
func (img *Image) recreateObjects(t *ptrace.Tracee, pid int) (int, error) {
	// Files without a name first: made and filled (their contents never
	// go through a batch), then finished by AddWithFiles' batch.
	files, err := img.Objects.CreateFiles(pid, t.Exec)
	if err != nil {
		return 0, err
	}
	ob := ptrace.NewBatch()
	img.Objects.AddWithFiles(ob, files)
	if _, err := t.Exec(ob); err != nil {
		return 0, fmt.Errorf("re-create event objects (%s): %w", img.Objects.Summary(), err)
	}
	return ob.Len(), nil
}

// runEpilogue builds the caller's epilogue batch and runs it.
func runEpilogue(t *ptrace.Tracee, epilogue func(*ptrace.Tracee) (*ptrace.Batch, error)) error {
	eb, err := epilogue(t)
	if err != nil {
		return fmt.Errorf("epilogue: %w", err)
	}
	if _, err := t.Exec(eb); err != nil {
		return fmt.Errorf("epilogue: %w", err)
	}
	return nil
}

// restoreTimersSignals re-arms the timers and queues the pending signals,
// once every thread has its mask: the signals stay queued.
func (img *Image) restoreTimersSignals(t *ptrace.Tracee, pid int) error {
	me, err := procfs.Thread(pid, pid)
	if err != nil {
		return err
	}
	tb := ptrace.NewBatch()
	img.addTimersSignals(tb, me.NSTID)
	if _, err := t.Exec(tb); err != nil {
		return fmt.Errorf("timers and signals: %w", err)
	}
	return nil
}

// loadRegisters gives the main thread the checkpointed registers and
// extended state. Its restart block is the restorer's (ptrace.OwnRestart).
func (img *Image) loadRegisters(t *ptrace.Tracee) error {
	if err := t.SetRegs(t.OwnRestart(img.Regs())); err != nil {
		return err
	}
	if len(img.XState) > 0 {
		if err := t.SetXState(img.XState); err != nil {
			return err
		}
	}
	return nil
}

// planError is the error of a plan that failed: a thread's clone3 that
// found its tid taken names the thread and the way out.
func (img *Image) planError(b *ptrace.Batch, err error) error {
	var ee *ptrace.EntryError
	if !errors.As(err, &ee) || ee.Nr != unix.SYS_CLONE3 {
		return fmt.Errorf("plan: %w", err)
	}
	k := 0
	for _, e := range b.Entries()[:ee.Index] {
		if e.Nr == unix.SYS_CLONE3 {
			k++
		}
	}
	tid := img.Threads[k].NSTID
	if ee.Errno == unix.EEXIST {
		return fmt.Errorf("thread %d: its tid is taken in the restorer's PID namespace (restore into a fresh one: catalyzer restore --sandbox): %w: %w",
			tid, ErrPidTaken, errdefs.ErrConflict)
	}
	return fmt.Errorf("plan: thread %d: %w", tid, err)
}

// credentials adds the plan's own credential entries (setgroups,
// setresgid, setresuid) to b: each re-created thread runs them in its
// batch, since credentials are per thread and the plan sets the main
// thread's after the threads are made.
func (img *Image) credentials(b *ptrace.Batch) {
	plan, _ := img.Plan() // decoded by Restore already
	data := plan.Data()
	for _, e := range plan.Entries() {
		switch e.Nr {
		case unix.SYS_SETGROUPS:
			groups := ptrace.Lit(0)
			if e.Args[0] > 0 {
				groups = b.Bytes(data[e.Args[1] : e.Args[1]+4*e.Args[0]])
			}
			b.Add(unix.SYS_SETGROUPS, ptrace.Lit(int64(e.Args[0])), groups)
		case unix.SYS_SETRESGID, unix.SYS_SETRESUID:
			b.Add(uintptr(e.Nr), ptrace.Lit(int64(e.Args[0])), ptrace.Lit(int64(e.Args[1])), ptrace.Lit(int64(e.Args[2])))
		}
	}
}

// prefetch reads the working set of pages.img in one sequential pass, so
// that the restored process finds those pages in the page cache.
func (img *Image) prefetch() error {
	f, err := os.Open(filepath.Join(img.Dir, PagesFile))
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	for _, r := range img.WorkingSet {
		for off := r.Off; off < r.Off+r.Len; {
			n := min(uint64(len(buf)), r.Off+r.Len-off)
			if _, err := f.ReadAt(buf[:n], int64(off)); err != nil {
				return fmt.Errorf("prefetch: %w", err)
			}
			off += n
		}
	}
	return nil
}

const madvPopulateRead = 22

// addPopulate appends MADV_POPULATE_READ entries for the working set's
// pages, mapped from pages.img (anonymous VMAs), to the plan.
func (img *Image) addPopulate(b *ptrace.Batch, ws []Range) {
	for _, v := range img.VMAs {
		if v.Kind != VMAAnon || v.PagesOff == noPages || v.Prot&protRead == 0 {
			continue
		}
		lo, hi := v.PagesOff, v.PagesOff+(v.End-v.Start)
		for _, r := range ws {
			a, z := max(r.Off, lo), min(r.Off+r.Len, hi)
			if a < z {
				b.Add(unix.SYS_MADVISE, ptrace.Lit(int64(v.Start+a-lo)), ptrace.Lit(int64(z-a)),
					ptrace.Lit(madvPopulateRead)).With(ptrace.IgnoreError)
			}
		}
	}
}

// RestorerBinary is the restorer: pause.Binary, a minimal static ELF
// that loops on pause() (one PT_LOAD segment at 0x10000, low, far from
// where images keep their executor).
func RestorerBinary() []byte { return pause.Binary() }

// The restorer is executed from a sealed memfd of this process, never
// from a file: a file in a shared directory ($TMPDIR) could be planted or
// swapped by another user between the check and the exec. The memfd has
// no name in any file system, and its seals (write, grow, shrink, exec
// bits, the seals themselves) make its bytes immutable once written.
var restorerExe struct {
	mu   sync.Mutex
	fd   int // 0 until made
	path string
}

// restorerFDMin is the lowest fd number the memfd may have: a child
// started by os/exec gets its ExtraFiles as fds 3, 4, ... and briefly
// holds dups just above them, so the memfd's number must lie far above
// any of those for /proc/self/fd/N to still name it when the child execs.
const restorerFDMin = 512

// restorerPath returns the path the restorer is executed from:
// /proc/self/fd/N of the sealed memfd holding RestorerBinary.
func restorerPath() (string, int, error) {
	x := &restorerExe
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.fd == 0 { // made once; a failure (EMFILE) is tried again next time
		fd, err := sealedRestorer()
		if err != nil {
			return "", -1, err
		}
		x.fd, x.path = fd, fmt.Sprintf("/proc/self/fd/%d", fd)
	}
	return x.path, x.fd, nil
}

func sealedRestorer() (int, error) {
	const name = "catalyzer-restorer"
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		// Before Linux 6.3 there is no MFD_EXEC: memfds are executable.
		fd, err = unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return -1, fmt.Errorf("restorer memfd: %w", err)
	}
	defer unix.Close(fd)
	bin := RestorerBinary()
	for off := 0; off < len(bin); {
		n, err := unix.Pwrite(fd, bin[off:], int64(off))
		if err != nil {
			return -1, fmt.Errorf("restorer memfd: write: %w", err)
		}
		off += n
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals|unix.F_SEAL_EXEC); err != nil {
		// F_SEAL_EXEC is Linux 6.3+.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
			return -1, fmt.Errorf("restorer memfd: seal: %w", err)
		}
	}
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, restorerFDMin)
	if err != nil {
		return -1, fmt.Errorf("restorer memfd: %w", err)
	}
	return high, nil
}

// StartRestorer runs the restorer binary on the host with files as fds 3,
// 4, ... and seizes it on tr. Wait for the returned command only after
// Restore (which detaches it).
func StartRestorer(tr *ptrace.Tracer, files []*os.File, opts ...ptrace.Option) (*exec.Cmd, *ptrace.Tracee, error) {
	return StartRestorerAttr(tr, files, nil, opts...)
}

// StartRestorerAttr is StartRestorer with process attributes (a new PID
// namespace, Pdeathsig).
func StartRestorerAttr(tr *ptrace.Tracer, files []*os.File, attr *syscall.SysProcAttr, opts ...ptrace.Option) (*exec.Cmd, *ptrace.Tracee, error) {
	path, fd, err := restorerPath()
	if err != nil {
		return nil, nil, err
	}
	if 2*(3+len(files))+8 > fd {
		return nil, nil, fmt.Errorf("restorer: %d files is too many to pass: %w", len(files), errdefs.ErrInvalid)
	}
	cmd := exec.Command(path)
	cmd.ExtraFiles = files
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	// Clones traced: the threads a plan re-creates start stopped.
	opts = append([]ptrace.Option{ptrace.TraceFork(false), ptrace.TraceClone(true), ptrace.ExitKill(true)}, opts...)
	t, err := tr.Seize(cmd.Process.Pid, opts...)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, nil, err
	}
	return cmd, t, nil
}

// ErrPidTaken: the image's original pid is in use (or was taken by
// another process while we tried to get it).
var ErrPidTaken = errors.New("original pid not available")

// StartRestorerAsPid is StartRestorer that gives the restorer pid want,
// the checkpointed process's own, so that everything that cached it
// (libc's TID, pid files) stays right. A restorer is started as usual,
// its executor mapped at execAddr (the image's), and it is made to
// clone3 itself with set_tid = want and CLONE_PARENT (the copy is our
// child, not its): the race-free way, since the single-threaded stub
// forks, not this multi-threaded process whose runtime may take pids at
// any time. The first restorer is then killed and reaped. A pid in use is
// ErrPidTaken. Wait for the returned process only after Restore.
func StartRestorerAsPid(tr *ptrace.Tracer, files []*os.File, want int, execAddr uintptr) (*os.Process, *ptrace.Tracee, error) {
	if want < 2 || unix.Kill(want, 0) != unix.ESRCH {
		return nil, nil, fmt.Errorf("pid %d is in use: %w", want, ErrPidTaken)
	}
	cmd, first, err := StartRestorer(tr, files)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var child *ptrace.Tracee
	err = tr.Do(func() error {
		if err := first.InstallExecutorAt(execAddr); err != nil {
			return err
		}
		b := ptrace.NewBatch()
		tid := b.Bytes(binary.LittleEndian.AppendUint32(nil, uint32(want)))
		args := b.Space(ptrace.CloneArgsSize)
		ref := b.Add(unix.SYS_CLONE3, args, ptrace.Lit(ptrace.CloneArgsSize)).With(ptrace.ForkPoint)
		addr, err := first.DataAddr(b, tid)
		if err != nil {
			return err
		}
		b.SetBytes(args, ptrace.CloneArgs{Flags: unix.CLONE_PARENT, SetTID: uint64(addr), SetTIDSize: 1}.Bytes())
		res, err := first.Exec(b)
		if err != nil {
			if errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("pid %d is in use: %w", want, ErrPidTaken)
			}
			return err
		}
		if res.Status != ptrace.StatusForkParent || res.Value(ref) != int64(want) || len(res.Children) != 1 {
			return fmt.Errorf("clone3(set_tid %d) gave %d (%v)", want, res.Value(ref), res.Status)
		}
		if child, err = first.Adopt(res.Children[0]); err != nil {
			unix.Kill(res.Children[0], unix.SIGKILL)
			return err
		}
		_, err = child.Resume(b) // nothing after the fork point: it stops at once
		return err
	})
	if err != nil {
		if child != nil {
			unix.Kill(child.Pid(), unix.SIGKILL)
			if p, perr := os.FindProcess(child.Pid()); perr == nil {
				p.Wait() // our child (CLONE_PARENT), dead
			}
		}
		return nil, nil, fmt.Errorf("restorer as pid %d: %w", want, err)
	}
	p, err := os.FindProcess(want)
	if err != nil {
		unix.Kill(want, unix.SIGKILL)
		return nil, nil, err
	}
	return p, child, nil
}
