package ptrace

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"
)

// ThreadCloneFlags re-create a thread as glibc's pthread_create makes one
// (its TLS and clear_child_tid given); AddThreadClones uses them, and a
// restore plan may use no others.
const ThreadCloneFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
	unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_CHILD_CLEARTID

// CloneArgsSize is the size of the struct clone_args ThreadCloneArgs
// makes (CLONE_ARGS_SIZE_VER2); CloneArgsSetTID the offset of its set_tid
// pointer.
const (
	CloneArgsSize   = 88
	CloneArgsSetTID = 64
)

// ThreadCloneArgs is the struct clone_args that re-creates st's thread:
// ThreadCloneFlags, its clear_child_tid, its TLS (fs_base), one tid
// (set_tid_size 1) whose pointer is left 0, exit signal 0, no stack (the
// thread starts on its creator's and gets its own registers before it
// runs).
func ThreadCloneArgs(st ThreadState) []byte {
	le := binary.LittleEndian
	a := make([]byte, CloneArgsSize)
	le.PutUint64(a[0:], ThreadCloneFlags)
	le.PutUint64(a[16:], st.TIDAddress)
	le.PutUint64(a[56:], st.Regs.Fs_base)
	le.PutUint64(a[72:], 1)
	return a
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
// of states. Each thread is adopted, runs one batch of its own on t's
// executor (rseq, robust list, sigaltstack, name, bounding set, s.Extra,
// ambient set, capset), one thread after another, and gets its
// registers, xstate and signal mask. None runs until Release: a released
// thread runs the process's own code, which must never overlap a batch
// that runs with seccomp suspended. On error t's process is killed and
// the threads adopted so far are reaped.
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
	err = t.tr.Do(func() error {
		for i, tid := range tids {
			st := states[i]
			th, err := t.Adopt(tid)
			if err != nil {
				return fmt.Errorf("thread %d (tid %d): %w", st.NSTID, tid, err)
			}
			r.threads = append(r.threads, th)
			b := threadBatch(st, st.Caps.Within(limit), int(last), s.Extra)
			if _, err := th.Exec(b); err != nil {
				return fmt.Errorf("thread %d (tid %d): %w", st.NSTID, tid, err)
			}
			if err := th.SetRegs(st.Regs); err != nil {
				return err
			}
			if err := th.SetXState(st.XState); err != nil {
				return err
			}
			if err := th.SetSigMask(st.SigMask); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		r.Kill()
		return nil, err
	}
	return r, nil
}

// threadBatch is the batch a re-created thread runs to take st's state,
// with capabilities caps.
func threadBatch(st ThreadState, caps ThreadCaps, lastCap int, extra func(*Batch)) *Batch {
	le := binary.LittleEndian
	b := NewBatch()
	if st.RSeq.Ptr != 0 {
		b.Add(unix.SYS_RSEQ, Lit(int64(st.RSeq.Ptr)), Lit(int64(st.RSeq.Size)), Lit(0), Lit(int64(st.RSeq.Signature)))
	}
	if st.Robust[0] != 0 {
		b.Add(unix.SYS_SET_ROBUST_LIST, Lit(int64(st.Robust[0])), Lit(int64(st.Robust[1])))
	}
	if flags := int32(le.Uint32(st.AltStack[8:])); flags&ssDisable == 0 {
		ss := st.AltStack
		le.PutUint32(ss[8:], uint32(flags&^ssOnstack))
		b.Add(unix.SYS_SIGALTSTACK, b.Bytes(ss[:]), Lit(0))
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
	hdr := make([]byte, 8)
	binary.LittleEndian.PutUint32(hdr, unix.LINUX_CAPABILITY_VERSION_3)
	data := make([]byte, 24)
	for i, v := range []uint64{effective, permitted, inheritable} {
		binary.LittleEndian.PutUint32(data[4*i:], uint32(v))
		binary.LittleEndian.PutUint32(data[12+4*i:], uint32(v>>32))
	}
	b.Add(unix.SYS_CAPSET, b.Bytes(hdr), b.Bytes(data))
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

// sigaltstack flags (stack_t.ss_flags).
const (
	ssOnstack = 1
	ssDisable = 2
)
