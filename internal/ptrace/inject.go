package ptrace

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
)

// executorCode is executor/executor.c compiled by executor/build.sh.
//
//go:embed executor_amd64.bin
var executorCode []byte

// Offsets in executorCode (see the asm at the top of executor.c).
const (
	execSyscallOff  = 0   // syscall; int3
	execSyscallTrap = 3   // rip after that int3
	execEntryOff    = 8   // batch entry: rdi = batch, rsp = stack top
	execDoneTrap    = 0xf // rip after the final int3
)

// The executor region mapped into a tracee: one R-X code page, a private
// stack, then the batch area.
const (
	execCodeSize = 4096
	execStackOff = execCodeSize
	execStackTop = execStackOff + 16<<10
	execBatchOff = execStackTop
	// ExecutorRegionSize is the size of the mapping Exec installs.
	ExecutorRegionSize = 1 << 20
	// MaxBatchSize is the largest encoded batch Exec accepts.
	MaxBatchSize = ExecutorRegionSize - execBatchOff
)

// DataAddr is the address that a (made by b's Bytes, String or Space)
// will have in the tracee when Exec runs b: for pointers stored inside the
// data area (a msghdr's iovec and control buffer), which relocations cannot
// reach. Add every entry first: entries move the data area. The executor
// must be installed.
func (t *Tracee) DataAddr(b *Batch, a Arg) (uintptr, error) {
	off, ok := a.DataOffset()
	if !ok {
		return 0, fmt.Errorf("data address: argument is not in the data area: %w", errdefs.ErrInvalid)
	}
	if t.exec == 0 {
		return 0, fmt.Errorf("data address: executor not installed: %w", ErrState)
	}
	return t.exec + execBatchOff + uintptr(b.layout().dataOff+off), nil
}

// ExecutorRegion returns the address and size of the executor mapping in
// the tracee (0, 0 if none): checkpoint code must leave it out.
func (t *Tracee) ExecutorRegion() (addr uintptr, size int) {
	if t.exec == 0 {
		return 0, 0
	}
	return t.exec, ExecutorRegionSize
}

// SyscallError is a negative result of an injected syscall.
type SyscallError struct {
	Pid   int
	Nr    uintptr
	Errno unix.Errno
}

func (e *SyscallError) Error() string {
	return fmt.Sprintf("injected %s in %d: %s", SyscallName(e.Nr), e.Pid, errnoString(e.Errno))
}

func (e *SyscallError) Unwrap() error { return e.Errno }

// EntryError is a batch entry that failed (StopOnError).
type EntryError struct {
	Index int
	Nr    uintptr
	Errno unix.Errno
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("entry %d (%s): %s", e.Index, SyscallName(e.Nr), errnoString(e.Errno))
}

func (e *EntryError) Unwrap() error { return e.Errno }

func errnoString(e unix.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n + " (" + e.Error() + ")"
	}
	return e.Error()
}

var syscallNames = map[uintptr]string{
	unix.SYS_READ: "read", unix.SYS_WRITE: "write", unix.SYS_OPEN: "open",
	unix.SYS_CLOSE: "close", unix.SYS_FSTAT: "fstat", unix.SYS_LSEEK: "lseek",
	unix.SYS_MMAP: "mmap", unix.SYS_MPROTECT: "mprotect", unix.SYS_MUNMAP: "munmap",
	unix.SYS_BRK: "brk", unix.SYS_RT_SIGACTION: "rt_sigaction",
	unix.SYS_RT_SIGPROCMASK: "rt_sigprocmask", unix.SYS_IOCTL: "ioctl",
	unix.SYS_PREAD64: "pread64", unix.SYS_MREMAP: "mremap", unix.SYS_MADVISE: "madvise",
	unix.SYS_DUP: "dup", unix.SYS_DUP2: "dup2", unix.SYS_GETPID: "getpid",
	unix.SYS_SOCKET: "socket", unix.SYS_CONNECT: "connect", unix.SYS_BIND: "bind",
	unix.SYS_LISTEN: "listen", unix.SYS_SOCKETPAIR: "socketpair",
	unix.SYS_CLONE: "clone", unix.SYS_FORK: "fork", unix.SYS_VFORK: "vfork",
	unix.SYS_EXIT: "exit", unix.SYS_WAIT4: "wait4", unix.SYS_KILL: "kill",
	unix.SYS_FCNTL: "fcntl", unix.SYS_CHDIR: "chdir", unix.SYS_FCHDIR: "fchdir",
	unix.SYS_PRCTL: "prctl", unix.SYS_ARCH_PRCTL: "arch_prctl", unix.SYS_GETTID: "gettid",
	unix.SYS_SET_TID_ADDRESS: "set_tid_address", unix.SYS_EXIT_GROUP: "exit_group",
	unix.SYS_OPENAT: "openat", unix.SYS_NEWFSTATAT: "newfstatat",
	unix.SYS_SET_ROBUST_LIST: "set_robust_list", unix.SYS_DUP3: "dup3",
	unix.SYS_PIPE2: "pipe2", unix.SYS_SETNS: "setns", unix.SYS_UNSHARE: "unshare",
	unix.SYS_SIGALTSTACK: "sigaltstack", unix.SYS_RSEQ: "rseq", unix.SYS_CLONE3: "clone3",
	unix.SYS_PIDFD_OPEN: "pidfd_open", unix.SYS_PIDFD_GETFD: "pidfd_getfd",
	unix.SYS_CLOSE_RANGE: "close_range", unix.SYS_GETRANDOM: "getrandom",
	unix.SYS_RESTART_SYSCALL: "restart_syscall", unix.SYS_NANOSLEEP: "nanosleep",
}

// SyscallName is the x86-64 name of nr ("syscall 123" when unknown).
func SyscallName(nr uintptr) string {
	if n, ok := syscallNames[nr]; ok {
		return n
	}
	return "syscall " + strconv.FormatUint(uint64(nr), 10)
}

// Syscall injects one syscall into the stopped tracee and returns its
// result; registers are restored (normalised, see NormalizeRestart)
// afterwards. With the executor installed it costs one round trip
// (rip = "syscall; int3" in the executor page); before that it jumps to a
// syscall instruction in the tracee's vDSO and uses PTRACE_SYSCALL (two
// round trips). A result in [-4095, -1] is returned as a *SyscallError.
func (t *Tracee) Syscall(nr uintptr, args ...uintptr) (uintptr, error) {
	var ret uintptr
	err := t.tr.Do(func() error {
		var err error
		ret, err = t.syscall(nr, args...)
		return err
	})
	return ret, err
}

func (t *Tracee) syscall(nr uintptr, args ...uintptr) (uintptr, error) {
	if len(args) > 6 {
		return 0, fmt.Errorf("injected %s: %d arguments: %w", SyscallName(nr), len(args), errdefs.ErrInvalid)
	}
	if err := t.stopped("inject into"); err != nil {
		return 0, err
	}
	if t.inBatch != nil {
		return 0, fmt.Errorf("inject into %d: a batch is paused: %w", t.pid, ErrState)
	}
	var saved Regs
	if err := t.getRegs(&saved); err != nil {
		return 0, err
	}
	r := saved
	var a [6]uintptr
	copy(a[:], args)
	r.Rax, r.Orig_rax = uint64(nr), ^uint64(0)
	r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9 = uint64(a[0]), uint64(a[1]), uint64(a[2]), uint64(a[3]), uint64(a[4]), uint64(a[5])
	var err error
	if t.exec != 0 {
		r.Rip = uint64(t.exec + execSyscallOff)
		if err = t.setRegs(&r); err == nil {
			err = t.runToTrap(func(rip uint64) bool { return rip == uint64(t.exec+execSyscallTrap) }, &r)
		}
	} else {
		if t.vdsoSys == 0 {
			if t.vdsoSys, err = t.findVDSOSyscall(); err != nil {
				return 0, err
			}
		}
		r.Rip = uint64(t.vdsoSys)
		if err = t.setRegs(&r); err == nil {
			err = t.runSyscallInsn(&r)
		}
	}
	if t.st == stateExited {
		return 0, err
	}
	back := saved
	NormalizeRestart(&back)
	if rerr := t.setRegs(&back); err == nil {
		err = rerr
	}
	if err != nil {
		return 0, fmt.Errorf("injected %s: %w", SyscallName(nr), err)
	}
	if ret := int64(r.Rax); ret < 0 && ret >= -4095 {
		return uintptr(r.Rax), &SyscallError{t.pid, nr, unix.Errno(-ret)}
	}
	return uintptr(r.Rax), nil
}

// runToTrap resumes the tracee until a SIGTRAP whose rip satisfies at.
// Other signals are recorded (re-raised on Detach) and suppressed; event
// stops are passed (fork children are recorded). A synchronous fault or a
// stray SIGTRAP in injected code is an error. On success r holds the
// registers at the trap.
func (t *Tracee) runToTrap(at func(rip uint64) bool, r *Regs) error {
	if err := t.resume(unix.PTRACE_CONT, 0); err != nil {
		return err
	}
	return t.waitTrap(at, r)
}

// waitTrap is runToTrap for a tracee already resumed (PTRACE_CONT).
func (t *Tracee) waitTrap(at func(rip uint64) bool, r *Regs) error {
	for {
		s, err := t.wait()
		if err != nil {
			return err
		}
		if s.Kind == StopSignal {
			switch s.Signal {
			case unix.SIGTRAP, unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE:
				if err := t.getRegs(r); err != nil {
					return err
				}
				if s.Signal == unix.SIGTRAP && at(r.Rip) {
					return nil
				}
				inCode := t.exec != 0 && r.Rip >= uint64(t.exec) && r.Rip <= uint64(t.exec+execCodeSize)
				if s.Signal != unix.SIGTRAP || inCode {
					return fmt.Errorf("%v at %#x in injected code of %d", s.Signal, r.Rip, t.pid)
				}
			}
			t.pending |= 1 << (s.Signal - 1)
		}
		if err := t.resume(unix.PTRACE_CONT, 0); err != nil {
			return err
		}
	}
}

// runSyscallInsn runs the tracee through one syscall instruction with
// PTRACE_SYSCALL (entry stop, exit stop); r holds the exit registers.
func (t *Tracee) runSyscallInsn(r *Regs) error {
	for seen := 0; seen < 2; {
		if err := t.resume(unix.PTRACE_SYSCALL, 0); err != nil {
			return err
		}
		s, err := t.wait()
		if err != nil {
			return err
		}
		switch s.Kind {
		case StopSyscall:
			seen++
		case StopSignal:
			t.pending |= 1 << (s.Signal - 1)
		}
	}
	return t.getRegs(r)
}

// findVDSOSyscall finds a syscall instruction (0f 05) in the tracee's vDSO.
func (t *Tracee) findVDSOSyscall() (uintptr, error) {
	maps, err := procfs.Maps(t.pid)
	if err != nil {
		return 0, err
	}
	for _, m := range maps {
		if m.Path != "[vdso]" {
			continue
		}
		code := make([]byte, m.Len())
		if err := t.ReadMem(uintptr(m.Start), code); err != nil {
			return 0, err
		}
		if i := bytes.Index(code, []byte{0x0f, 0x05}); i >= 0 {
			return uintptr(m.Start) + uintptr(i), nil
		}
		return 0, fmt.Errorf("no syscall instruction in the vDSO of %d: %w", t.pid, errdefs.ErrNotSupported)
	}
	return 0, fmt.Errorf("process %d has no vDSO: %w", t.pid, errdefs.ErrNotSupported)
}

// InstallExecutor maps the batch executor into the stopped tracee (an
// anonymous private mapping of ExecutorRegionSize bytes; first page R-X
// code, the rest RW stack and batch area). Idempotent; Exec calls it.
// Costs four round trips (mmap and mprotect through the vDSO).
func (t *Tracee) InstallExecutor() error {
	return t.tr.Do(t.installExecutor)
}

// InstallExecutorAt is InstallExecutor at a chosen, page-aligned address
// (MAP_FIXED_NOREPLACE: it fails with EEXIST if anything is mapped there):
// a restore plan must know where its executor lives, away from the
// mappings it creates. An executor already installed elsewhere is an
// error.
func (t *Tracee) InstallExecutorAt(addr uintptr) error {
	return t.tr.Do(func() error {
		if t.exec != 0 {
			if t.exec == addr {
				return nil
			}
			return fmt.Errorf("install executor at %#x: already at %#x: %w", addr, t.exec, ErrState)
		}
		return t.installExecutorAt(addr)
	})
}

func (t *Tracee) installExecutor() error {
	if t.exec != 0 {
		return nil
	}
	return t.installExecutorAt(0)
}

func (t *Tracee) installExecutorAt(hint uintptr) error {
	flags := uintptr(unix.MAP_PRIVATE | unix.MAP_ANONYMOUS)
	if hint != 0 {
		flags |= unix.MAP_FIXED_NOREPLACE
	}
	addr, err := t.syscall(unix.SYS_MMAP, hint, ExecutorRegionSize, unix.PROT_READ|unix.PROT_WRITE,
		flags, ^uintptr(0), 0)
	if err != nil {
		return fmt.Errorf("install executor: %w", err)
	}
	if hint != 0 && addr != hint {
		t.syscall(unix.SYS_MUNMAP, addr, ExecutorRegionSize)
		return fmt.Errorf("install executor at %#x: kernel chose %#x: %w", hint, addr, errdefs.ErrNotSupported)
	}
	fail := func(err error) error {
		t.syscall(unix.SYS_MUNMAP, addr, ExecutorRegionSize)
		return fmt.Errorf("install executor: %w", err)
	}
	if err := t.WriteMem(addr, executorCode); err != nil {
		return fail(err)
	}
	if _, err := t.syscall(unix.SYS_MPROTECT, addr, execCodeSize, unix.PROT_READ|unix.PROT_EXEC); err != nil {
		return fail(err)
	}
	t.exec = addr
	return nil
}

// RemoveExecutor unmaps the executor region from the stopped tracee (the
// munmap runs through the vDSO, not from the page being unmapped). Forked
// children keep their own copy until they remove it themselves.
func (t *Tracee) RemoveExecutor() error {
	return t.tr.Do(func() error {
		if t.exec == 0 {
			return nil
		}
		if t.inBatch != nil {
			return fmt.Errorf("remove executor from %d: a batch is paused: %w", t.pid, ErrState)
		}
		addr := t.exec
		t.exec = 0
		// Look for the vDSO's syscall instruction again: a restore plan
		// may have moved the vDSO (mremap) since we last used it.
		t.vdsoSys = 0
		if _, err := t.syscall(unix.SYS_MUNMAP, addr, ExecutorRegionSize); err != nil {
			t.exec = addr
			return fmt.Errorf("remove executor: %w", err)
		}
		return nil
	})
}

// Results is what a batch run reported.
type Results struct {
	Status Status
	// Index is the last entry that ran: the failing entry (StatusError),
	// the StopAfter entry (StatusPaused), the ForkPoint (StatusForkParent).
	Index int
	// Values holds each entry's result; entries that did not run hold 0.
	Values []int64
	// Children are the pids that fork/clone events reported during the run
	// (auto-attached: pass them to Adopt).
	Children []int
	data     []byte
}

// Value is the result of the entry r.
func (r *Results) Value(ref Ref) int64 { return r.Values[ref.idx] }

// Data returns n bytes of the data area at a (made by Bytes, String or
// Space) as the tracee left them: out-parameters such as struct stat.
func (r *Results) Data(a Arg, n int) []byte {
	off, ok := a.DataOffset()
	if !ok || off+n > len(r.data) {
		return nil
	}
	return r.data[off : off+n]
}

// Exec runs batch b in the stopped tracee in one round trip (plus one per
// fork/clone event and per intercepted signal): it installs the executor if
// needed, writes the encoded batch into the executor region, points rip
// at the executor with rdi = the batch, continues to the final int3 and
// reads the results back. Registers are restored (normalised) afterwards,
// unless the batch paused (StatusPaused: call Resume). A failing entry is
// returned as an *EntryError along with the results.
func (t *Tracee) Exec(b *Batch) (*Results, error) {
	var res *Results
	err := t.tr.Do(func() error {
		if err := t.stopped("exec batch in"); err != nil {
			return err
		}
		if t.inBatch != nil {
			return fmt.Errorf("exec batch in %d: another batch is paused: %w", t.pid, ErrState)
		}
		buf := b.Encode()
		if len(buf) > MaxBatchSize {
			return fmt.Errorf("batch of %d bytes (max %d): %w", len(buf), MaxBatchSize, errdefs.ErrTooLarge)
		}
		fresh := t.exec == 0
		if err := t.installExecutor(); err != nil {
			return err
		}
		if !fresh {
			// The code page is the tracee's memory: anything that shares
			// its credentials could have patched it (/proc/PID/mem writes
			// through R-X) since the last batch, and a batch runs with
			// seccomp suspended. Write it again: what runs is ours.
			if err := t.WriteMem(t.exec, executorCode); err != nil {
				return fmt.Errorf("exec batch in %d: refresh executor: %w", t.pid, err)
			}
		}
		if err := t.WriteMem(t.exec+execBatchOff, buf); err != nil {
			return err
		}
		var saved Regs
		if err := t.getRegs(&saved); err != nil {
			return err
		}
		r := saved
		r.Rip = uint64(t.exec + execEntryOff)
		r.Rdi = uint64(t.exec + execBatchOff)
		r.Rsp = uint64(t.exec + execStackTop)
		r.Orig_rax = ^uint64(0)
		r.Eflags &^= 0x500 // TF, DF
		if err := t.setRegs(&r); err != nil {
			return err
		}
		t.inBatch = &saved
		t.children = nil
		var err error
		res, err = t.runBatch(b)
		return err
	})
	return res, err
}

// Resume continues a batch in the stopped tracee until the executor traps
// again: after StatusPaused, or in a child adopted after a ForkPoint (the
// child then runs the entries after the fork point). In a child nothing is
// restored at the end: it stays stopped in the executor for the caller to
// load registers (SetRegs) and Detach.
func (t *Tracee) Resume(b *Batch) (*Results, error) {
	var res *Results
	err := t.tr.Do(func() error {
		if err := t.stopped("resume batch in"); err != nil {
			return err
		}
		if t.exec == 0 {
			return fmt.Errorf("resume batch in %d: no executor: %w", t.pid, ErrState)
		}
		var err error
		res, err = t.runBatch(b)
		return err
	})
	return res, err
}

func (t *Tracee) runBatch(b *Batch) (*Results, error) {
	var r Regs
	err := t.runToTrap(func(rip uint64) bool {
		return rip >= uint64(t.exec+execEntryOff) && rip < uint64(t.exec+uintptr(len(executorCode)))
	}, &r)
	if t.st == stateExited {
		t.inBatch = nil
		return nil, fmt.Errorf("batch in %d: %w", t.pid, err)
	}
	restore := func() error {
		if t.inBatch == nil {
			return nil
		}
		back := *t.inBatch
		t.inBatch = nil
		NormalizeRestart(&back)
		return t.setRegs(&back)
	}
	if err != nil {
		restore()
		return nil, fmt.Errorf("batch in %d: %w", t.pid, err)
	}
	l := b.layout()
	tail := make([]byte, l.total-l.dataOff)
	if err := t.ReadMem(t.exec+execBatchOff+uintptr(l.dataOff), tail); err != nil {
		restore()
		return nil, err
	}
	res := decodeResults(b, tail)
	res.Children = t.Children()
	switch res.Status {
	case StatusPaused:
		if r.Rip == uint64(t.exec+execDoneTrap) {
			return res, fmt.Errorf("batch in %d: paused status at the final trap", t.pid)
		}
		return res, nil
	case StatusDone, StatusForkParent:
		return res, restore()
	case StatusError:
		if res.Index < 0 || res.Index >= len(b.entries) {
			restore()
			return res, fmt.Errorf("batch in %d: executor reported entry %d of %d", t.pid, res.Index, len(b.entries))
		}
		if err := restore(); err != nil {
			return res, err
		}
		return res, &EntryError{res.Index, uintptr(b.entries[res.Index].Nr), unix.Errno(-res.Values[res.Index])}
	}
	restore()
	return res, fmt.Errorf("batch in %d: executor trapped with status %v", t.pid, res.Status)
}

// decodeResults reads b's results from tail, the batch as the executor
// left it from its data area on.
func decodeResults(b *Batch, tail []byte) *Results {
	l := b.layout()
	le := binary.LittleEndian
	rs := tail[l.resultsOff-l.dataOff:]
	res := &Results{
		Status: Status(le.Uint64(rs[0:])),
		Index:  int(le.Uint64(rs[8:])),
		Values: make([]int64, len(b.entries)),
		data:   tail[:l.dataSize],
	}
	for i := range res.Values {
		res.Values[i] = int64(le.Uint64(rs[resultsHead+8*i:]))
	}
	return res
}
