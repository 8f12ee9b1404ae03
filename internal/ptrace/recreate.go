package ptrace

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// ThreadCloneFlags re-create a thread as glibc's pthread_create makes one
// (its TLS and clear_child_tid given); AddThreadClones uses them, and a
// restore plan may use no others.
const ThreadCloneFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_CHILD_CLEARTID

// ThreadCloneArgs is the struct clone_args that re-creates st's thread:
// ThreadCloneFlags, its clear_child_tid, its TLS (fs_base), one tid
// (set_tid_size 1) whose pointer is left 0, exit signal 0, no stack (the
// thread starts on its creator's and gets its own registers before it
// runs).
func ThreadCloneArgs(st ThreadState) []byte {
	return CloneArgs{Flags: ThreadCloneFlags, ChildTID: st.TIDAddress, TLS: st.Regs.Fs_base, SetTIDSize: 1}.Bytes()
}

// ThreadClone is the clone3 entry AddThreadClones added for one thread.
// Args is its struct clone_args in the data area; the set_tid pointer in
// it (at CloneArgsSetTID) is left 0 for the caller to fill once the
// batch's layout is final (SetTIDPointer with Tracee.DataAddr of TID, or a
// restore plan's relocation); TID holds the thread's NSTID as a u32.
type ThreadClone struct {
	Entry Ref
	Args  Arg
	TID   Arg
}

// AddThreadClones adds one clone3 per state to b, each re-creating that
// thread in the calling process (ThreadCloneArgs) with its tid (set_tid =
// NSTID, in the caller's PID
// namespace: the kernel fails with EEXIST where that tid is taken, and
// needs CAP_CHECKPOINT_RESTORE). A tracee that traces clones (TraceClone)
// sees each new thread start stopped, to be given its state by
// RestoreThreads before it runs.
func AddThreadClones(b *Batch, states []ThreadState) []ThreadClone {
	out := make([]ThreadClone, len(states))
	for i, st := range states {
		out[i].TID = b.Bytes(binary.LittleEndian.AppendUint32(nil, uint32(st.NSTID)))
		out[i].Args = b.Bytes(ThreadCloneArgs(st))
		out[i].Entry = b.Add(unix.SYS_CLONE3, out[i].Args, Lit(CloneArgsSize))
	}
	return out
}

// SetTIDPointer writes addr, the address c.TID has when b runs
// (Tracee.DataAddr), into c's clone_args.
func (c ThreadClone) SetTIDPointer(b *Batch, addr uint64) {
	off, _ := c.Args.DataOffset()
	b.SetBytes(b.DataAt(off+CloneArgsSetTID), binary.LittleEndian.AppendUint64(nil, addr))
}

// ThreadSetup is what RestoreThreads gives each thread beyond its
// ThreadState.
type ThreadSetup struct {
	// Extra adds the caller's entries to each thread's own batch: after
	// its state (rseq, robust list, sigaltstack, name) and its bounding
	// set, before the rest of its capabilities (a setresuid there must
	// precede the capset that drops CAP_SETUID).
	Extra func(b *Batch)
	// Limit bounds each thread's capabilities: it gets its recorded
	// ones Within Limit (nil: AllCaps).
	Limit *ThreadCaps
}

// Recreated are the threads RestoreThreads set up: stopped, each with its
// state, none yet running.
type Recreated struct {
	tr      *Tracer
	pid     int
	tids    []int // every re-created thread, adopted or not
	threads []*Tracee
}

// RestoreThreads gives each thread that t (stopped: its process's main
// thread) re-created with AddThreadClones its state: tids are the new
// threads' host tids as their clone events reported them, in the order
// of states. Each thread is adopted and runs one batch of its own on t's
// executor (rseq, robust list, sigaltstack, name, bounding set, s.Extra,
// ambient set, capset), then gets its registers, xstate and signal mask.
// The batches run side by side, each on a stack of its own in the batch
// area (as many at a time as fit there): the threads' stops overlap
// instead of adding up. None runs the process's own code until Release:
// a released thread runs the process's own code, which must never
// overlap a batch that runs with seccomp suspended. On error t's process
// is killed and the threads adopted so far are reaped.
func (t *Tracee) RestoreThreads(states []ThreadState, tids []int, s ThreadSetup) (*Recreated, error) {
	r := &Recreated{tr: t.tr, pid: t.pid, tids: tids}
	if len(tids) != len(states) {
		r.Kill()
		return nil, fmt.Errorf("re-created %d threads, want %d", len(tids), len(states))
	}
	last, err := capability.LastCap()
	if err != nil {
		r.Kill()
		return nil, fmt.Errorf("re-create threads: %w", err)
	}
	limit := AllCaps
	if s.Limit != nil {
		limit = *s.Limit
	}
	batches := make([]*Batch, len(states))
	for i, st := range states {
		batches[i] = threadBatch(st, st.Caps.Within(limit), int(last), s.Extra)
	}
	err = t.tr.Do(func() error {
		if err := t.stopped("re-create threads of"); err != nil {
			return err
		}
		if t.exec == 0 {
			return fmt.Errorf("re-create threads of %d: no executor: %w", t.pid, ErrState)
		}
		for i, tid := range tids {
			th, err := t.adopt(tid, true)
			if err != nil {
				return fmt.Errorf("thread %d (tid %d): %w", states[i].NSTID, tid, err)
			}
			r.threads = append(r.threads, th)
		}
		// What runs is ours (see Exec): the code page once for all.
		if err := t.WriteMem(t.exec, executorCode); err != nil {
			return fmt.Errorf("re-create threads of %d: refresh executor: %w", t.pid, err)
		}
		for start := 0; start < len(batches); {
			end, err := t.threadWave(r.threads, states, batches, start)
			if err != nil {
				return err
			}
			start = end
		}
		return nil
	})
	if err != nil {
		r.Kill()
		return nil, err
	}
	return r, nil
}

// threadSlotStack is the stack each thread's batch runs on: the
// executor's frames are a few hundred bytes.
const threadSlotStack = 2 << 10

// threadWave runs the batches of threads[start:end] at once, as many as
// fit in the batch area from start, and gives each thread its state; it
// returns end. Slot k: the batch, then its stack (16-byte aligned top).
func (t *Tracee) threadWave(threads []*Tracee, states []ThreadState, batches []*Batch, start int) (int, error) {
	var area []byte
	var offs, tops []int
	end := start
	for end < len(batches) {
		enc := batches[end].Encode()
		size := (len(enc)+15)&^15 + threadSlotStack
		if len(area)+size > MaxBatchSize {
			if end == start {
				return 0, fmt.Errorf("thread %d: batch of %d bytes (max %d): %w", states[end].NSTID, len(enc), MaxBatchSize-threadSlotStack, errdefs.ErrTooLarge)
			}
			break
		}
		offs = append(offs, len(area))
		area = append(area, enc...)
		area = append(area, make([]byte, size-len(enc))...)
		tops = append(tops, len(area))
		end++
	}
	base := t.exec + execBatchOff
	if err := t.WriteMem(base, area); err != nil {
		return 0, err
	}
	atTrap := func(rip uint64) bool { return rip == uint64(t.exec+execDoneTrap) }
	// Start every batch, then collect them: a thread runs while the
	// next ones are started.
	for k, th := range threads[start:end] {
		r := states[start+k].Regs
		r.Rip = uint64(t.exec + execEntryOff)
		r.Rdi = uint64(base) + uint64(offs[k])
		r.Rsp = uint64(base) + uint64(tops[k])
		r.Orig_rax = ^uint64(0)
		r.Eflags &^= 0x500 // TF, DF
		if err := th.setRegs(&r); err != nil {
			return 0, err
		}
		if err := th.resume(unix.PTRACE_CONT, 0); err != nil {
			return 0, err
		}
	}
	for k, th := range threads[start:end] {
		var r Regs
		if err := th.waitTrap(atTrap, &r); err != nil {
			return 0, fmt.Errorf("thread %d (tid %d): %w", states[start+k].NSTID, th.pid, err)
		}
	}
	if err := t.ReadMem(base, area); err != nil {
		return 0, err
	}
	for k, th := range threads[start:end] {
		st := states[start+k]
		b := batches[start+k]
		l := b.layout()
		res := decodeResults(b, area[offs[k]+l.dataOff:offs[k]+l.total])
		switch {
		case res.Status == StatusError && res.Index >= 0 && res.Index < len(b.entries):
			return 0, fmt.Errorf("thread %d (tid %d): %w", st.NSTID, th.pid,
				&EntryError{res.Index, uintptr(b.entries[res.Index].Nr), unix.Errno(-res.Values[res.Index])})
		case res.Status != StatusDone:
			return 0, fmt.Errorf("thread %d (tid %d): batch ended with status %v", st.NSTID, th.pid, res.Status)
		}
		regs := t.OwnRestart(st.Regs)
		if err := th.setRegs(&regs); err != nil {
			return 0, err
		}
		if err := th.SetXState(st.XState); err != nil {
			return 0, err
		}
		if err := th.SetSigMask(st.SigMask); err != nil {
			return 0, err
		}
	}
	return end, nil
}

// OwnRestart is r, the normalised registers of a thread of t's process
// whose restart block is not its own (a re-created thread; a restored
// main thread, whose block is its restorer's), with a resume through
// restart_syscall made an EINTR return from the interrupted call. t
// must be stopped; it reads the instruction at rip. RestoreThreads
// applies it to every thread it re-creates.
//
// The kernel keeps how to resume an ERESTART_RESTARTBLOCK call (relative
// nanosleep and clock_nanosleep, futex waits with a timeout, poll) in
// the thread's restart block, and clone copies the creator's: a
// re-created thread's restart_syscall would resume its creator's last
// interrupted call, not its own (a 1 ms nanosleep became the main
// thread's 1000 s sleep, or a wait on the main thread's pollfds or
// futex; TestRecreatedThreadsTick). Returning EINTR at the instruction
// after the syscall is what a fresh restart block gives
// (do_no_restart_syscall) and what each of those calls may return.
// Normalised registers say restart_syscall with rax and rip rewound onto
// a syscall instruction; a call that returned 219 at its exit stop has
// rip after it (checked when orig_rax is one of those calls).
func (t *Tracee) OwnRestart(r Regs) Regs {
	if int64(r.Orig_rax) < 0 || r.Rax != unix.SYS_RESTART_SYSCALL {
		return r
	}
	switch r.Orig_rax {
	case unix.SYS_NANOSLEEP, unix.SYS_CLOCK_NANOSLEEP, unix.SYS_FUTEX, unix.SYS_POLL, unix.SYS_RESTART_SYSCALL:
	default:
		return r
	}
	insn := make([]byte, 2)
	if err := t.ReadMem(uintptr(r.Rip), insn); err != nil || insn[0] != 0x0f || insn[1] != 0x05 {
		return r
	}
	eintr := -int64(unix.EINTR)
	r.Rax, r.Rip, r.Orig_rax = uint64(eintr), r.Rip+2, ^uint64(0)
	return r
}

// threadBatch is the batch a re-created thread runs to take st's state,
// with capabilities caps.
func threadBatch(st ThreadState, caps ThreadCaps, lastCap int, extra func(*Batch)) *Batch {
	b := NewBatch()
	if st.RSeq.Ptr != 0 {
		b.Add(unix.SYS_RSEQ, Lit(int64(st.RSeq.Ptr)), Lit(int64(st.RSeq.Size)), Lit(0), Lit(int64(st.RSeq.Signature)))
	}
	if st.Robust[0] != 0 {
		b.Add(unix.SYS_SET_ROBUST_LIST, Lit(int64(st.Robust[0])), Lit(int64(st.Robust[1])))
	}
	if ss, ok := AltStackRestore(st.AltStack); ok {
		b.Add(unix.SYS_SIGALTSTACK, b.Bytes(ss), Lit(0))
	}
	if st.Comm != "" {
		b.Add(unix.SYS_PRCTL, Lit(unix.PR_SET_NAME), b.String(st.Comm))
	}
	// The bounding set first: dropping needs CAP_SETPCAP, which the
	// thread has from its creator until its own capset.
	for c := 0; c <= lastCap; c++ {
		if caps.Bounding&(1<<c) == 0 {
			b.Add(unix.SYS_PRCTL, Lit(unix.PR_CAPBSET_DROP), Lit(int64(c)))
		}
	}
	if extra != nil {
		extra(b)
	}
	b.Add(unix.SYS_PRCTL, Lit(unix.PR_CAP_AMBIENT), Lit(unix.PR_CAP_AMBIENT_CLEAR_ALL), Lit(0), Lit(0), Lit(0))
	AddCapset(b, caps.Effective, caps.Permitted, caps.Inheritable)
	for c := 0; c <= lastCap; c++ {
		if caps.Ambient&(1<<c) != 0 {
			b.Add(unix.SYS_PRCTL, Lit(unix.PR_CAP_AMBIENT), Lit(unix.PR_CAP_AMBIENT_RAISE), Lit(int64(c)), Lit(0), Lit(0))
		}
	}
	return b
}

// AddCapset adds capset(2) of the calling thread's effective, permitted
// and inheritable sets to b (version 3: two 32-bit halves each).
func AddCapset(b *Batch, effective, permitted, inheritable uint64) {
	b.Add(unix.SYS_CAPSET, b.Bytes(CapHeaderV3(0)), b.Bytes(CapDataV3(effective, permitted, inheritable)))
}

// Release lets every thread run (PTRACE_DETACH each); the main thread is
// the caller's to release after. On error the process is killed (Kill).
func (r *Recreated) Release() error {
	for _, th := range r.threads {
		th.exec = 0 // the mapping is the main thread's to keep or remove
		if err := th.Detach(); err != nil {
			r.Kill()
			return fmt.Errorf("release thread %d of %d: %w", th.Pid(), r.pid, err)
		}
	}
	r.threads, r.tids = nil, nil
	return nil
}

// Kill kills the process and reaps the re-created threads not released
// (traced: their deaths are reported to us, not to the process's parent).
func (r *Recreated) Kill() {
	unix.Kill(r.pid, unix.SIGKILL)
	r.tr.Do(func() error {
		ReapKilled(r.tids, 2*time.Second)
		return nil
	})
	r.threads, r.tids = nil, nil
}

// ReapKilled reaps the killed, traced threads tids (any order: a
// leader's death is reported once its other threads are reaped), polling
// for at most within; ECHILD (not ours, or gone) counts as reaped. It
// returns those still unreaped. Call on the tracer's thread.
func ReapKilled(tids []int, within time.Duration) []int {
	pending := map[int]bool{}
	for _, tid := range tids {
		pending[tid] = true
	}
	deadline := time.Now().Add(within)
	for len(pending) > 0 && time.Now().Before(deadline) {
		for tid := range pending {
			var ws unix.WaitStatus
			n, err := unix.Wait4(tid, &ws, unix.WALL|unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || (n > 0 && (ws.Exited() || ws.Signaled())) {
				delete(pending, tid)
			}
		}
		if len(pending) > 0 {
			time.Sleep(time.Millisecond)
		}
	}
	return slices.Sorted(maps.Keys(pending))
}
