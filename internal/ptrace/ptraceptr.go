package ptrace

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ptracePtr is ptrace with a pointer argument: the pointer stays a
// pointer until the syscall itself (converted to uintptr in the call
// expression), so that a stack copy between the caller and the syscall
// (a goroutine stack growing in a callee's prologue) moves it with the
// data. A uintptr made by the caller and passed down, as t.ptrace takes
// it, keeps the old address: the kernel then reads or writes the
// abandoned stack (GETREGS "returned" all zeros, SETREGS then failed with
// EIO).
func (t *Tracee) ptracePtr(req int, addr uintptr, data unsafe.Pointer) error {
	t.ptraceCalls.Add(1)
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(t.pid), addr, uintptr(data), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
