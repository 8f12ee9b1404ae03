package ptrace

// Kernel structs a batch writes into its data area for the tracee's
// syscalls to read, each laid out once here: x86-64 layouts as the
// tracee's kernel reads them (little-endian, LP64 alignment, padding
// zero). Each has its size constant and its field offsets named, for
// callers that fill a pointer in later (Batch.SetBytes at an offset) or
// read a struct the kernel wrote back (Result.Data). The builders return
// fresh slices the caller may hand to Batch.Bytes or Batch.SetBytes.
// kstruct_test.go checks every size and offset against
// golang.org/x/sys/unix's own types where it has them, and against the
// UAPI headers transcribed where it does not (clone_args, stack_t,
// sigevent).

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// kle is the byte order of every struct here.
var kle = binary.LittleEndian

// struct clone_args (linux/sched.h), as far as CLONE_ARGS_SIZE_VER2
// (cgroup): the size clone3 is given.
const (
	CloneArgsSize       = 88
	CloneArgsFlags      = 0
	CloneArgsPidfd      = 8
	CloneArgsChildTID   = 16
	CloneArgsParentTID  = 24
	CloneArgsExitSignal = 32
	CloneArgsStack      = 40
	CloneArgsStackSize  = 48
	CloneArgsTLS        = 56
	CloneArgsSetTID     = 64
	CloneArgsSetTIDSize = 72
	CloneArgsCgroup     = 80
)

// CloneArgs is a struct clone_args with the fields this module uses;
// the others (pidfd, parent_tid, stack, stack_size) stay 0. SetTID is a
// pointer to SetTIDSize pid_t; Cgroup a cgroup directory fd, read only
// with CLONE_INTO_CGROUP.
type CloneArgs struct {
	Flags, ChildTID, ExitSignal, TLS, SetTID, SetTIDSize, Cgroup uint64
}

// Bytes is a as the CloneArgsSize bytes clone3 reads.
func (a CloneArgs) Bytes() []byte {
	b := make([]byte, CloneArgsSize)
	kle.PutUint64(b[CloneArgsFlags:], a.Flags)
	kle.PutUint64(b[CloneArgsChildTID:], a.ChildTID)
	kle.PutUint64(b[CloneArgsExitSignal:], a.ExitSignal)
	kle.PutUint64(b[CloneArgsTLS:], a.TLS)
	kle.PutUint64(b[CloneArgsSetTID:], a.SetTID)
	kle.PutUint64(b[CloneArgsSetTIDSize:], a.SetTIDSize)
	kle.PutUint64(b[CloneArgsCgroup:], a.Cgroup)
	return b
}

// struct iovec.
const (
	IovecSize = 16
	IovecBase = 0
	IovecLen  = 8
)

// Iovec is a struct iovec of n bytes at base.
func Iovec(base, n uint64) []byte {
	b := make([]byte, IovecSize)
	kle.PutUint64(b[IovecBase:], base)
	kle.PutUint64(b[IovecLen:], n)
	return b
}

// struct msghdr (the kernel's user_msghdr).
const (
	MsghdrSize       = 56
	MsghdrName       = 0
	MsghdrNamelen    = 8
	MsghdrIov        = 16
	MsghdrIovlen     = 24
	MsghdrControl    = 32
	MsghdrControllen = 40
	MsghdrFlags      = 48
)

// Msghdr is a struct msghdr without an address (msg_name NULL): iovlen
// iovecs at iov, controllen bytes of control buffer at control, flags 0
// (recvmsg writes msg_flags back at MsghdrFlags).
func Msghdr(iov, iovlen, control, controllen uint64) []byte {
	b := make([]byte, MsghdrSize)
	kle.PutUint64(b[MsghdrIov:], iov)
	kle.PutUint64(b[MsghdrIovlen:], iovlen)
	kle.PutUint64(b[MsghdrControl:], control)
	kle.PutUint64(b[MsghdrControllen:], controllen)
	return b
}

// struct sock_fprog: a u16 length, 6 bytes of padding, the pointer.
const (
	SockFprogSize   = 16
	SockFprogLen    = 0
	SockFprogFilter = 8
)

// SockFprog is a struct sock_fprog of n struct sock_filter at filter.
func SockFprog(n uint16, filter uint64) []byte {
	b := make([]byte, SockFprogSize)
	kle.PutUint16(b[SockFprogLen:], n)
	kle.PutUint64(b[SockFprogFilter:], filter)
	return b
}

// stack_t (sigaltstack(2)): ss_sp, ss_flags (int, 4 bytes of padding
// after it), ss_size.
const (
	StackTSize   = 24
	StackTSp     = 0
	StackTFlags  = 8
	StackTSsSize = 16
)

// stack_t.ss_flags values.
const (
	SSOnstack    = 1
	SSDisable    = 2
	SSAutodisarm = 1 << 31
)

// StackTFlagsOf is ss_flags of a stack_t sigaltstack wrote (an int,
// read as the bits it holds).
func StackTFlagsOf(ss [StackTSize]byte) uint32 {
	return kle.Uint32(ss[StackTFlags:])
}

// AltStackRestore is the stack_t that re-installs the alternate stack
// recorded as ss (a sigaltstack query's answer), and false if ss shows
// none (SS_DISABLE): ss itself with SS_ONSTACK cleared, which the query
// reports while the thread runs on that stack and sigaltstack refuses as
// input.
func AltStackRestore(ss [StackTSize]byte) ([]byte, bool) {
	flags := StackTFlagsOf(ss)
	if flags&SSDisable != 0 {
		return nil, false
	}
	kle.PutUint32(ss[StackTFlags:], flags&^SSOnstack)
	return ss[:], true
}

// struct itimerspec: it_interval, then it_value, each a struct timespec.
const (
	ItimerspecSize     = 32
	ItimerspecInterval = 0
	ItimerspecValue    = 16
	TimespecSize       = 16
	TimespecSec        = 0
	TimespecNsec       = 8
)

// Itimerspec is a struct itimerspec (timerfd_settime, timer_settime).
func Itimerspec(interval, value unix.Timespec) []byte {
	b := make([]byte, ItimerspecSize)
	kle.PutUint64(b[ItimerspecInterval+TimespecSec:], uint64(interval.Sec))
	kle.PutUint64(b[ItimerspecInterval+TimespecNsec:], uint64(interval.Nsec))
	kle.PutUint64(b[ItimerspecValue+TimespecSec:], uint64(value.Sec))
	kle.PutUint64(b[ItimerspecValue+TimespecNsec:], uint64(value.Nsec))
	return b
}

// struct epoll_event: packed on x86-64 (the u64 data at offset 4).
const (
	EpollEventSize   = 12
	EpollEventEvents = 0
	EpollEventData   = 4
)

// EpollEvent is a struct epoll_event (epoll_ctl).
func EpollEvent(events uint32, data uint64) []byte {
	b := make([]byte, EpollEventSize)
	kle.PutUint32(b[EpollEventEvents:], events)
	kle.PutUint64(b[EpollEventData:], data)
	return b
}

// struct flock.
const (
	FlockSize   = 32
	FlockType   = 0
	FlockWhence = 2
	FlockStart  = 8
	FlockLen    = 16
	FlockPid    = 24
)

// Flock is a struct flock for F_SETLK/F_OFD_SETLK (l_pid 0, which
// F_OFD_SETLK requires). length 0 reaches to the end of the file.
func Flock(typ, whence int16, start, length int64) []byte {
	b := make([]byte, FlockSize)
	kle.PutUint16(b[FlockType:], uint16(typ))
	kle.PutUint16(b[FlockWhence:], uint16(whence))
	kle.PutUint64(b[FlockStart:], uint64(start))
	kle.PutUint64(b[FlockLen:], uint64(length))
	return b
}

// struct sigevent (SIGEV_MAX_SIZE bytes): sigev_value (union sigval),
// sigev_signo, sigev_notify, then the union whose first member is the
// thread id SIGEV_THREAD_ID targets.
const (
	SigeventSize   = 64
	SigeventValue  = 0
	SigeventSigno  = 8
	SigeventNotify = 12
	SigeventTID    = 16
)

// Sigevent is a struct sigevent (timer_create).
func Sigevent(value uint64, signo, notify, tid int32) []byte {
	b := make([]byte, SigeventSize)
	kle.PutUint64(b[SigeventValue:], value)
	kle.PutUint32(b[SigeventSigno:], uint32(signo))
	kle.PutUint32(b[SigeventNotify:], uint32(notify))
	kle.PutUint32(b[SigeventTID:], uint32(tid))
	return b
}

// capset(2)'s struct __user_cap_header_struct and, for version 3, its
// two struct __user_cap_data_struct (low then high 32 bits of each set).
const (
	CapHeaderSize      = 8
	CapHeaderVersion   = 0
	CapHeaderPid       = 4
	CapDataSize        = 12
	CapDataEffective   = 0
	CapDataPermitted   = 4
	CapDataInheritable = 8
)

// CapHeaderV3 is a capset header of _LINUX_CAPABILITY_VERSION_3 for pid
// (0: the calling thread).
func CapHeaderV3(pid int32) []byte {
	b := make([]byte, CapHeaderSize)
	kle.PutUint32(b[CapHeaderVersion:], unix.LINUX_CAPABILITY_VERSION_3)
	kle.PutUint32(b[CapHeaderPid:], uint32(pid))
	return b
}

// CapDataV3 is the two cap data structs version 3 reads: the low 32 bits
// of each set in the first, the high in the second.
func CapDataV3(effective, permitted, inheritable uint64) []byte {
	b := make([]byte, 2*CapDataSize)
	for i, shift := range []uint{0, 32} {
		d := b[i*CapDataSize:]
		kle.PutUint32(d[CapDataEffective:], uint32(effective>>shift))
		kle.PutUint32(d[CapDataPermitted:], uint32(permitted>>shift))
		kle.PutUint32(d[CapDataInheritable:], uint32(inheritable>>shift))
	}
	return b
}
