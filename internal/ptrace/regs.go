package ptrace

import (
	"fmt"
	"io"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Regs is the general register set (struct user_regs_struct), including
// fs_base and gs_base.
type Regs = unix.PtraceRegs

// Kernel-internal restart codes a thread interrupted in a syscall shows in
// rax at a ptrace stop (include/linux/errno.h).
const (
	errRestartSys          = 512
	errRestartNoIntr       = 513
	errRestartNoHand       = 514
	errRestartRestartBlock = 516
)

// NormalizeRestart rewrites registers captured while the thread was stopped
// inside an interrupted syscall so that resuming from them (in this thread
// or any copy: a fork child, a restored process) re-issues the syscall,
// exactly what the kernel does on its own when no handler runs:
//
//   - rax = -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND: rip -= 2 (back
//     onto the 2-byte syscall instruction), rax = orig_rax (the syscall
//     number);
//   - rax = -ERESTART_RESTARTBLOCK: rip -= 2, rax = __NR_restart_syscall
//     (the kernel continues nanosleep/poll/... from the thread's restart
//     block; a fork child inherits the block, a process restored from an
//     image does not and gets EINTR from restart_syscall instead);
//
// ERESTARTSYS and ERESTARTNOHAND would become EINTR if a handler ran; we
// always choose "restart" (the handler, if the signal is re-raised, runs
// after and interrupts the restarted call as usual). Registers not in a
// syscall (orig_rax < 0) or with any other rax are returned unchanged.
// It reports whether it changed anything. x86-64 syscall instruction only
// (not int 0x80).
func NormalizeRestart(r *Regs) bool {
	if int64(r.Orig_rax) < 0 {
		return false
	}
	switch -int64(r.Rax) {
	case errRestartSys, errRestartNoIntr, errRestartNoHand:
		r.Rax = r.Orig_rax
	case errRestartRestartBlock:
		r.Rax = unix.SYS_RESTART_SYSCALL
	default:
		return false
	}
	r.Rip -= 2
	return true
}

// Regs reads the general registers of the stopped tracee.
func (t *Tracee) Regs() (Regs, error) {
	var r Regs
	err := t.tr.Do(func() error {
		if err := t.stopped("get registers of"); err != nil {
			return err
		}
		return t.getRegs(&r)
	})
	return r, err
}

// SetRegs writes the general registers of the stopped tracee.
func (t *Tracee) SetRegs(r Regs) error {
	return t.tr.Do(func() error {
		if err := t.stopped("set registers of"); err != nil {
			return err
		}
		return t.setRegs(&r)
	})
}

func (t *Tracee) getRegs(r *Regs) error {
	if err := t.ptracePtr(unix.PTRACE_GETREGS, 0, unsafe.Pointer(r)); err != nil {
		return fmt.Errorf("get registers of %d: %w", t.pid, err)
	}
	return nil
}

func (t *Tracee) setRegs(r *Regs) error {
	if err := t.ptracePtr(unix.PTRACE_SETREGS, 0, unsafe.Pointer(r)); err != nil {
		return fmt.Errorf("set registers of %d: %w", t.pid, err)
	}
	return nil
}

const ntX86XState = 0x202 // NT_X86_XSTATE

// xstateSize is the kernel's XSAVE buffer size for ptrace, learned once by
// offering a large buffer (the kernel shortens iov_len to what it wrote).
var xstateSize atomic.Int64

// XState reads the full XSAVE area (x87, SSE, AVX, ... as enabled in XCR0;
// the legacy FXSAVE part holds xmm0-15 at offset 160) of the stopped
// tracee via PTRACE_GETREGSET NT_X86_XSTATE.
func (t *Tracee) XState() ([]byte, error) {
	var out []byte
	err := t.tr.Do(func() error {
		if err := t.stopped("get xstate of"); err != nil {
			return err
		}
		n := int(xstateSize.Load())
		if n == 0 {
			n = 1 << 16
		}
		buf := make([]byte, n)
		iov := unix.Iovec{Base: &buf[0]}
		iov.SetLen(n)
		if err := t.ptracePtr(unix.PTRACE_GETREGSET, ntX86XState, unsafe.Pointer(&iov)); err != nil {
			return fmt.Errorf("get xstate of %d: %w", t.pid, err)
		}
		xstateSize.Store(int64(iov.Len))
		out = buf[:iov.Len]
		return nil
	})
	return out, err
}

// SetXState writes an XSAVE area obtained from XState (same size).
func (t *Tracee) SetXState(buf []byte) error {
	return t.tr.Do(func() error {
		if err := t.stopped("set xstate of"); err != nil {
			return err
		}
		if len(buf) == 0 {
			return fmt.Errorf("set xstate of %d: empty buffer", t.pid)
		}
		iov := unix.Iovec{Base: &buf[0]}
		iov.SetLen(len(buf))
		if err := t.ptracePtr(unix.PTRACE_SETREGSET, ntX86XState, unsafe.Pointer(&iov)); err != nil {
			return fmt.Errorf("set xstate of %d: %w", t.pid, err)
		}
		return nil
	})
}

// ReadMem reads len(p) bytes at addr through /proc/PID/mem (one pread;
// read-only mappings too, as a debugger reads them). It needs no
// particular thread, but must not race with Detach.
func (t *Tracee) ReadMem(addr uintptr, p []byte) error {
	if t.mem == nil {
		return fmt.Errorf("read memory of %d: %w", t.pid, ErrState)
	}
	n, err := t.mem.ReadAt(p, int64(addr))
	if err == io.EOF && n == len(p) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("read %d bytes at %#x in %d: %w", len(p), addr, t.pid, err)
	}
	return nil
}

// WriteMem writes p at addr through /proc/PID/mem (also into read-only
// mappings: the kernel breaks CoW as for a debugger breakpoint).
func (t *Tracee) WriteMem(addr uintptr, p []byte) error {
	if t.mem == nil {
		return fmt.Errorf("write memory of %d: %w", t.pid, ErrState)
	}
	if _, err := t.mem.WriteAt(p, int64(addr)); err != nil {
		return fmt.Errorf("write %d bytes at %#x in %d: %w", len(p), addr, t.pid, err)
	}
	return nil
}
