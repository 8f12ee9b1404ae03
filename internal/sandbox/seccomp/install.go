package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// Install loads prog with seccomp(SECCOMP_SET_MODE_FILTER, 0) on the calling
// OS thread only (no TSYNC); threads it creates afterwards inherit it. Call
// it with the OS thread locked (runtime.LockOSThread), after setting
// no_new_privs (prctl(PR_SET_NO_NEW_PRIVS)) unless the caller holds
// CAP_SYS_ADMIN. A kernel without seccomp filters yields
// errdefs.ErrNotSupported; a program the kernel refuses, errdefs.ErrInvalid.
func Install(prog []unix.SockFilter) error {
	if runtime.GOARCH != "amd64" {
		return fmt.Errorf("install seccomp: programs are compiled for x86_64, running on %s: %w", runtime.GOARCH, errdefs.ErrNotSupported)
	}
	if err := Validate(prog); err != nil {
		return fmt.Errorf("install seccomp: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	switch {
	case errno == 0:
		return nil
	case errors.Is(errno, unix.ENOSYS):
		return fmt.Errorf("install seccomp: %w: %w", errno, errdefs.ErrNotSupported)
	case errors.Is(errno, unix.EINVAL):
		return fmt.Errorf("install seccomp: %w: %w", errno, errdefs.ErrInvalid)
	case errors.Is(errno, unix.EACCES):
		return fmt.Errorf("install seccomp: %w (no_new_privs not set and no CAP_SYS_ADMIN)", errno)
	}
	return fmt.Errorf("install seccomp: %w", errno)
}
