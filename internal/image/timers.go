package image

import (
	"encoding/binary"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// POSIX timers and pending signals: read at checkpoint (/proc/PID/timers
// and timer_gettime in the query batch; PTRACE_PEEKSIGINFO of each
// thread's queue and the process's), kept in meta.bin's timer and signal
// tables, and given back by Restore in one batch of its own making after
// every thread has its signal mask: timer_create with the timer's own id
// (PR_TIMER_CREATE_RESTORE_IDS, switched on by the plan while it still
// has CAP_CHECKPOINT_RESTORE), timer_settime with the time that was left,
// then each queued signal again, in queue order (rt_sigqueueinfo for the
// process's, rt_tgsigqueueinfo for a thread's), siginfo as it was.

// Timer is one POSIX timer of the image.
type Timer struct {
	ID     int32
	Clock  int32
	Notify int32  // procfs.SigevSignal, SigevNone or SigevThreadID
	Signo  int32  // sigev_signo
	TID    int32  // SigevThreadID: the thread it signals, by its tid in its PID namespace (the main thread's is the header's MainTID)
	_      uint32 // zero
	Value  uint64 // sigev_value
	// Spec is the struct itimerspec timer_gettime gave: interval seconds
	// and nanoseconds, then time left seconds and nanoseconds.
	Spec [4]int64
}

// Signal is one queued signal of the image.
type Signal struct {
	Shared uint32 // 1: queued for the process (ShdPnd); 0: for thread TID
	TID    uint32 // 0: the main thread, else a thread record's tid
	Info   ptrace.SigInfo
}

const (
	maxTimers  = 4096
	maxSignals = 4096

	prTimerCreateRestoreIDs   = 77
	prTimerCreateRestoreIDsOn = 1

	sigTrap = 5
)

// timerClocks are the clocks whose timers are checkpointed: the CPU-time
// clocks count the process's own time, which a restore does not carry.
// The alarm clocks need CAP_WAKE_ALARM.
var timerClocks = map[int32]bool{unix.CLOCK_REALTIME: true, unix.CLOCK_MONOTONIC: true, unix.CLOCK_BOOTTIME: true, unix.CLOCK_TAI: true}

// readTimers lists the process's POSIX timers and refuses the ones it
// cannot restore; queryTimers reads their time left.
func (s *state) readTimers() ([]procfs.PosixTimer, error) {
	ts, err := procfs.PosixTimers(s.pid)
	if err != nil {
		return nil, err
	}
	if len(ts) > maxTimers {
		return nil, &UnsupportedError{s.pid, "POSIX timers", fmt.Sprintf("%d timers (at most %d are checkpointed)", len(ts), maxTimers)}
	}
	for _, t := range ts {
		if !timerClocks[int32(t.Clock)] {
			return nil, &UnsupportedError{s.pid, fmt.Sprintf("POSIX timer %d", t.ID), fmt.Sprintf("clock %d: only CLOCK_REALTIME, MONOTONIC, BOOTTIME and TAI timers are checkpointed", t.Clock)}
		}
	}
	return ts, nil
}

// queryTimers adds a timer_gettime of each timer to the query batch; the
// returned function makes the image's records of the results.
func (s *state) queryTimers(b *ptrace.Batch, ts []procfs.PosixTimer) func(*ptrace.Results) error {
	specs := make([]ptrace.Arg, len(ts))
	for i, t := range ts {
		specs[i] = b.Space(32)
		b.Add(unix.SYS_TIMER_GETTIME, ptrace.Lit(int64(t.ID)), specs[i])
	}
	return func(res *ptrace.Results) error {
		for i, t := range ts {
			r := Timer{ID: t.ID, Clock: int32(t.Clock), Notify: int32(t.Notify), Signo: int32(t.Signo), Value: t.Value}
			if t.Notify == procfs.SigevThreadID {
				r.TID = int32(s.mainTID)
				if t.TID != s.pid {
					k := slices.IndexFunc(s.threads, func(st ptrace.ThreadState) bool { return st.TID == t.TID })
					if k < 0 {
						return &UnsupportedError{s.pid, fmt.Sprintf("POSIX timer %d", t.ID), fmt.Sprintf("it signals thread %d, not one of the process's", t.TID)}
					}
					r.TID = int32(s.threads[k].NSTID)
				}
			}
			d := res.Data(specs[i], 32)
			for k := range r.Spec {
				r.Spec[k] = int64(binary.LittleEndian.Uint64(d[8*k:]))
			}
			s.timers = append(s.timers, r)
		}
		return nil
	}
}

// checkPending refuses, before anything runs in the process, signals
// pending that a thread does not block (the injected code would take
// them) and a pending SIGTRAP (taken for the executor's own trap).
// Queued blocked signals are read later (readSignals).
func checkPending(pid int) error {
	tids, err := procfs.Threads(pid)
	if err != nil {
		return fmt.Errorf("checkpoint %d: %w", pid, err)
	}
	blockedByAll := ^uint64(0)
	var shared uint64
	for _, tid := range tids {
		ti, err := procfs.Thread(pid, tid)
		if err != nil {
			return fmt.Errorf("checkpoint %d: %w", pid, err)
		}
		what := "pending signals"
		if tid != pid {
			what = fmt.Sprintf("thread %d", tid)
		}
		if m := ti.SigPnd &^ ti.SigBlk; m != 0 {
			return transientError{&UnsupportedError{pid, what, fmt.Sprintf("SigPnd %#x not blocked (about to be delivered): checkpoint it again", m)}}
		}
		if (ti.SigPnd|ti.ShdPnd)&(1<<(sigTrap-1)) != 0 {
			return &UnsupportedError{pid, what, "a pending SIGTRAP is not checkpointed (the checkpoint's own traps are SIGTRAPs)"}
		}
		blockedByAll &= ti.SigBlk
		shared = ti.ShdPnd
	}
	if m := shared &^ blockedByAll; m != 0 {
		return transientError{&UnsupportedError{pid, "pending signals", fmt.Sprintf("ShdPnd %#x not blocked by every thread (about to be delivered): checkpoint it again", m)}}
	}
	return nil
}

// readSignals reads the queued signals of the process and of each of its
// threads (PTRACE_PEEKSIGINFO; on the tracer thread), refusing a pending
// signal whose siginfo was not queued (the queue was full when it came).
func (s *state) readSignals(threads []ptrace.ThreadState) error {
	read := func(tid int, shared bool, rtid uint32, pending uint64) error {
		if pending == 0 {
			return nil // nothing to peek (and a thread given by the caller need not be ours to peek)
		}
		infos, err := ptrace.PeekSigInfo(tid, shared)
		if err != nil {
			return err
		}
		var got uint64
		for _, in := range infos {
			n := in.Signo()
			if n < 1 || n > 64 {
				return fmt.Errorf("thread %d: queued signal number %d", tid, n)
			}
			got |= 1 << (n - 1)
			sh := uint32(0)
			if shared {
				sh = 1
			}
			s.signals = append(s.signals, Signal{Shared: sh, TID: rtid, Info: in})
		}
		if got != pending {
			return &UnsupportedError{s.pid, "pending signals", fmt.Sprintf("pending %#x, queued %#x: a signal without its siginfo is not checkpointed", pending, got)}
		}
		return nil
	}
	main, err := procfs.Thread(s.pid, s.pid)
	if err != nil {
		return err
	}
	if err := read(s.pid, false, 0, main.SigPnd); err != nil {
		return err
	}
	if err := read(s.pid, true, 0, main.ShdPnd); err != nil {
		return err
	}
	for _, st := range threads {
		ti, err := procfs.Thread(s.pid, st.TID)
		if err != nil {
			return err
		}
		if err := read(st.TID, false, uint32(st.NSTID), ti.SigPnd); err != nil {
			return err
		}
	}
	if len(s.signals) > maxSignals {
		return &UnsupportedError{s.pid, "pending signals", fmt.Sprintf("%d queued (at most %d are checkpointed)", len(s.signals), maxSignals)}
	}
	return nil
}

// checkTimersSignals validates the image's timer and signal tables
// against its threads: known clocks and notifications, distinct ids,
// canonical times, signals that exist, targets that are the image's
// threads, and each queued signal blocked by every thread it may go to
// (a signal that was not blocked would have been delivered: one in the
// image would be taken while Restore still drives the process).
func checkTimersSignals(img *Image) error {
	masks := map[uint32]uint64{0: img.hdr.SigMask}
	all := img.hdr.SigMask
	tids := map[int32]bool{int32(img.hdr.MainTID): true}
	for _, th := range img.Threads {
		masks[uint32(th.NSTID)] = th.SigMask
		all &= th.SigMask
		tids[int32(th.NSTID)] = true
	}
	ids := map[int32]bool{}
	for i, t := range img.Timers {
		bad := func(why string) error { return invalid("timer %d (id %d): %s", i, t.ID, why) }
		switch {
		case t.ID < 0 || ids[t.ID]:
			return bad("id negative or twice")
		case !timerClocks[t.Clock]:
			return bad(fmt.Sprintf("clock %d", t.Clock))
		case t.Notify != procfs.SigevSignal && t.Notify != procfs.SigevNone && t.Notify != procfs.SigevThreadID:
			return bad(fmt.Sprintf("notify %d", t.Notify))
		case t.Signo < 0 || t.Signo > 64 || (t.Notify != procfs.SigevNone && t.Signo == 0):
			return bad(fmt.Sprintf("signal %d", t.Signo))
		case t.TID != 0 && t.Notify != procfs.SigevThreadID:
			return bad("a thread for a timer that signals none")
		case t.Notify == procfs.SigevThreadID && !tids[t.TID]:
			return bad(fmt.Sprintf("thread %d is not one of the image's", t.TID))
		}
		for k, v := range t.Spec {
			if v < 0 || (k%2 == 1 && v >= 1e9) {
				return bad(fmt.Sprintf("itimerspec %v", t.Spec))
			}
		}
		ids[t.ID] = true
	}
	for i, sg := range img.Signals {
		n := sg.Info.Signo()
		bad := func(why string) error { return invalid("queued signal %d (%d): %s", i, n, why) }
		if n < 1 || n > 64 || n == int(unix.SIGKILL) || n == int(unix.SIGSTOP) || n == sigTrap {
			return bad("not a signal that is queued")
		}
		bit := uint64(1) << (n - 1)
		switch sg.Shared {
		case 1:
			if sg.TID != 0 || all&bit == 0 {
				return bad("a process's signal must be blocked by every thread")
			}
		case 0:
			m, ok := masks[sg.TID]
			if !ok || m&bit == 0 {
				return bad(fmt.Sprintf("thread %d is not one of the image's, or does not block it", sg.TID))
			}
		default:
			return bad("shared flag")
		}
	}
	return nil
}

// addTimersSignals appends to b (run by the restored main thread, once
// every thread has its mask) the re-creation of img's timers and queued
// signals. The plan switched PR_TIMER_CREATE_RESTORE_IDS on; it is
// switched off here once the timers have their ids. mainTID is the
// restored main thread's tid in its PID namespace: a timer that signalled
// the image's main thread signals it.
func (img *Image) addTimersSignals(b *ptrace.Batch, mainTID int) {
	le := binary.LittleEndian
	pid := b.Add(unix.SYS_GETPID).Result()
	for _, t := range img.Timers {
		tid := t.TID
		if t.Notify == procfs.SigevThreadID && tid == int32(img.hdr.MainTID) {
			tid = int32(mainTID)
		}
		sevArg := b.Bytes(ptrace.Sigevent(t.Value, t.Signo, t.Notify, tid))
		id := b.Bytes(le.AppendUint32(nil, uint32(t.ID)))
		b.Add(unix.SYS_TIMER_CREATE, ptrace.Lit(int64(t.Clock)), sevArg, id)
		if t.Spec[2] != 0 || t.Spec[3] != 0 {
			spec := ptrace.Itimerspec(unix.Timespec{Sec: t.Spec[0], Nsec: t.Spec[1]}, unix.Timespec{Sec: t.Spec[2], Nsec: t.Spec[3]})
			b.Add(unix.SYS_TIMER_SETTIME, ptrace.Lit(int64(t.ID)), ptrace.Lit(0), b.Bytes(spec), ptrace.Lit(0))
		}
	}
	if len(img.Timers) > 0 {
		b.Add(unix.SYS_PRCTL, ptrace.Lit(prTimerCreateRestoreIDs), ptrace.Lit(0), ptrace.Lit(0), ptrace.Lit(0), ptrace.Lit(0))
	}
	for _, sg := range img.Signals {
		n := ptrace.Lit(int64(sg.Info.Signo()))
		info := b.Bytes(sg.Info[:])
		switch {
		case sg.Shared == 1:
			b.Add(unix.SYS_RT_SIGQUEUEINFO, pid, n, info)
		case sg.TID == 0:
			b.Add(unix.SYS_RT_TGSIGQUEUEINFO, pid, pid, n, info)
		default:
			b.Add(unix.SYS_RT_TGSIGQUEUEINFO, pid, ptrace.Lit(int64(sg.TID)), n, info)
		}
	}
}
