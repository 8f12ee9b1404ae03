package ptrace

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SigInfo is a siginfo_t as the kernel copies it out (128 bytes).
type SigInfo [128]byte

// Signo is the signal number (si_signo).
func (s SigInfo) Signo() int { return int(int32(binary.LittleEndian.Uint32(s[0:]))) }

// Code is si_code.
func (s SigInfo) Code() int { return int(int32(binary.LittleEndian.Uint32(s[8:]))) }

const (
	ptracePeekSiginfo       = 0x4209
	ptracePeekSiginfoShared = 1
)

// maxPeeked bounds what PeekSigInfo reads of one queue: a queue holds at
// most RLIMIT_SIGPENDING signals, which a process may have raised high.
const maxPeeked = 1 << 16

// PeekSigInfo reads, without dequeuing them, the signals queued for the
// stopped tracee tid (a thread this tracer traces): its own queue, or
// with shared its process's (PTRACE_PEEKSIGINFO), in queue order. Call it
// on the tracer thread (inside Tracer.Do).
func PeekSigInfo(tid int, shared bool) ([]SigInfo, error) {
	args := struct {
		Off   uint64
		Flags uint32
		Nr    int32
	}{}
	if shared {
		args.Flags = ptracePeekSiginfoShared
	}
	var out []SigInfo
	buf := make([]SigInfo, 64)
	for {
		args.Off, args.Nr = uint64(len(out)), int32(len(buf))
		n, _, e := unix.Syscall6(unix.SYS_PTRACE, ptracePeekSiginfo, uintptr(tid),
			uintptr(unsafe.Pointer(&args)), uintptr(unsafe.Pointer(&buf[0])), 0, 0)
		if e != 0 {
			return nil, fmt.Errorf("ptrace(PEEKSIGINFO) %d: %w", tid, e)
		}
		out = append(out, buf[:n]...)
		if int(n) < len(buf) {
			return out, nil
		}
		if len(out) >= maxPeeked {
			return nil, fmt.Errorf("ptrace(PEEKSIGINFO) %d: more than %d signals queued", tid, maxPeeked)
		}
	}
}
