package ptrace

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A field a builder wrote: its offset, width in bytes and value.
type kfield struct {
	off, width int
	val        uint64
}

// checkBytes fails unless b is size bytes holding exactly fields (each
// little-endian at its offset) and zero everywhere else.
func checkBytes(t *testing.T, name string, b []byte, size int, fields ...kfield) {
	t.Helper()
	if len(b) != size {
		t.Fatalf("%s: %d bytes, want %d", name, len(b), size)
	}
	want := make([]byte, size)
	for _, f := range fields {
		switch f.width {
		case 2:
			binary.LittleEndian.PutUint16(want[f.off:], uint16(f.val))
		case 4:
			binary.LittleEndian.PutUint32(want[f.off:], uint32(f.val))
		case 8:
			binary.LittleEndian.PutUint64(want[f.off:], f.val)
		default:
			t.Fatalf("%s: field width %d", name, f.width)
		}
	}
	if !bytes.Equal(b, want) {
		t.Errorf("%s:\n got % x\nwant % x", name, b, want)
	}
}

// checkOffsets fails where one of our offsets differs from the one
// unsafe.Offsetof gives for the kernel's type (pairs of ours, theirs).
func checkOffsets(t *testing.T, name string, size int, sizeof uintptr, pairs ...uintptr) {
	t.Helper()
	if uintptr(size) != sizeof {
		t.Errorf("%s: size constant %d, the type's %d", name, size, sizeof)
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] != pairs[i+1] {
			t.Errorf("%s: field %d at offset %d, the type has it at %d", name, i/2, pairs[i], pairs[i+1])
		}
	}
}

// memOf is v's memory as the kernel would read it.
func memOf[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// cloneArgsUAPI is struct clone_args of linux/sched.h (every field an
// __aligned_u64); x/sys/unix has no type for it, only the sizes of its
// versions, which the test checks too.
type cloneArgsUAPI struct {
	Flags, Pidfd, ChildTID, ParentTID, ExitSignal, Stack, StackSize, TLS, SetTID, SetTIDSize, Cgroup uint64
}

func TestKstructCloneArgs(t *testing.T) {
	var u cloneArgsUAPI
	checkOffsets(t, "clone_args", CloneArgsSize, unsafe.Sizeof(u),
		CloneArgsFlags, unsafe.Offsetof(u.Flags), CloneArgsPidfd, unsafe.Offsetof(u.Pidfd),
		CloneArgsChildTID, unsafe.Offsetof(u.ChildTID), CloneArgsParentTID, unsafe.Offsetof(u.ParentTID),
		CloneArgsExitSignal, unsafe.Offsetof(u.ExitSignal), CloneArgsStack, unsafe.Offsetof(u.Stack),
		CloneArgsStackSize, unsafe.Offsetof(u.StackSize), CloneArgsTLS, unsafe.Offsetof(u.TLS),
		CloneArgsSetTID, unsafe.Offsetof(u.SetTID), CloneArgsSetTIDSize, unsafe.Offsetof(u.SetTIDSize),
		CloneArgsCgroup, unsafe.Offsetof(u.Cgroup),
		// Version 1 added set_tid and set_tid_size, version 2 cgroup.
		CloneArgsSetTID, unix.CLONE_ARGS_SIZE_VER0, CloneArgsCgroup, unix.CLONE_ARGS_SIZE_VER1,
		CloneArgsSize, unix.CLONE_ARGS_SIZE_VER2)

	a := CloneArgs{Flags: 1, ChildTID: 2, ExitSignal: 3, TLS: 4, SetTID: 5, SetTIDSize: 6, Cgroup: 7}
	u = cloneArgsUAPI{Flags: 1, ChildTID: 2, ExitSignal: 3, TLS: 4, SetTID: 5, SetTIDSize: 6, Cgroup: 7}
	if got := a.Bytes(); !bytes.Equal(got, memOf(&u)) {
		t.Errorf("CloneArgs.Bytes:\n got % x\nwant % x", got, memOf(&u))
	}

	st := ThreadState{TIDAddress: 0x7f0000001234}
	st.Regs.Fs_base = 0x7f0000005678
	checkBytes(t, "ThreadCloneArgs", ThreadCloneArgs(st), CloneArgsSize,
		kfield{CloneArgsFlags, 8, ThreadCloneFlags}, kfield{CloneArgsChildTID, 8, st.TIDAddress},
		kfield{CloneArgsTLS, 8, st.Regs.Fs_base}, kfield{CloneArgsSetTIDSize, 8, 1})
}

func TestKstructIovecMsghdr(t *testing.T) {
	var iv unix.Iovec
	checkOffsets(t, "iovec", IovecSize, unsafe.Sizeof(iv),
		IovecBase, unsafe.Offsetof(iv.Base), IovecLen, unsafe.Offsetof(iv.Len),
		IovecSize, unix.SizeofIovec)
	checkBytes(t, "Iovec", Iovec(0x7ffd00001000, 8), IovecSize,
		kfield{IovecBase, 8, 0x7ffd00001000}, kfield{IovecLen, 8, 8})

	var m unix.Msghdr
	checkOffsets(t, "msghdr", MsghdrSize, unsafe.Sizeof(m),
		MsghdrName, unsafe.Offsetof(m.Name), MsghdrNamelen, unsafe.Offsetof(m.Namelen),
		MsghdrIov, unsafe.Offsetof(m.Iov), MsghdrIovlen, unsafe.Offsetof(m.Iovlen),
		MsghdrControl, unsafe.Offsetof(m.Control), MsghdrControllen, unsafe.Offsetof(m.Controllen),
		MsghdrFlags, unsafe.Offsetof(m.Flags), MsghdrSize, unix.SizeofMsghdr)
	checkBytes(t, "Msghdr", Msghdr(0x1000, 1, 0x2000, 24), MsghdrSize,
		kfield{MsghdrIov, 8, 0x1000}, kfield{MsghdrIovlen, 8, 1},
		kfield{MsghdrControl, 8, 0x2000}, kfield{MsghdrControllen, 8, 24})
}

func TestKstructSockFprog(t *testing.T) {
	var p unix.SockFprog
	checkOffsets(t, "sock_fprog", SockFprogSize, unsafe.Sizeof(p),
		SockFprogLen, unsafe.Offsetof(p.Len), SockFprogFilter, unsafe.Offsetof(p.Filter),
		SockFprogSize, unix.SizeofSockFprog)
	checkBytes(t, "SockFprog", SockFprog(300, 0x7ffd00002000), SockFprogSize,
		kfield{SockFprogLen, 2, 300}, kfield{SockFprogFilter, 8, 0x7ffd00002000})
}

// stackTUAPI is stack_t (asm/signal.h): void *ss_sp; int ss_flags;
// size_t ss_size (the int's bits as a uint32 here, to hold
// SS_AUTODISARM). x/sys/unix has no type for it.
type stackTUAPI struct {
	Sp    uintptr
	Flags uint32
	Size  uintptr
}

func TestKstructStackT(t *testing.T) {
	var s stackTUAPI
	checkOffsets(t, "stack_t", StackTSize, unsafe.Sizeof(s),
		StackTSp, unsafe.Offsetof(s.Sp), StackTFlags, unsafe.Offsetof(s.Flags), StackTSsSize, unsafe.Offsetof(s.Size))

	for _, tc := range []struct {
		flags, want uint32
		ok          bool
	}{
		{0, 0, true},
		{SSOnstack, 0, true}, // queried while on the stack: re-installed without SS_ONSTACK
		{SSAutodisarm | SSOnstack, SSAutodisarm, true},
		{SSDisable, 0, false},
	} {
		var ss [StackTSize]byte
		s = stackTUAPI{Sp: 0x7f0000010000, Flags: tc.flags, Size: 0x4000}
		copy(ss[:], memOf(&s))
		if got := StackTFlagsOf(ss); got != tc.flags {
			t.Errorf("StackTFlagsOf(flags %#x) = %#x", tc.flags, got)
		}
		got, ok := AltStackRestore(ss)
		if ok != tc.ok {
			t.Errorf("AltStackRestore(flags %#x): ok %v, want %v", tc.flags, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		checkBytes(t, fmt.Sprintf("AltStackRestore(flags %#x)", tc.flags), got, StackTSize,
			kfield{StackTSp, 8, 0x7f0000010000}, kfield{StackTFlags, 4, uint64(tc.want)}, kfield{StackTSsSize, 8, 0x4000})
	}
}

func TestKstructItimerspec(t *testing.T) {
	var its unix.ItimerSpec
	checkOffsets(t, "itimerspec", ItimerspecSize, unsafe.Sizeof(its),
		ItimerspecInterval, unsafe.Offsetof(its.Interval), ItimerspecValue, unsafe.Offsetof(its.Value),
		TimespecSec, unsafe.Offsetof(its.Value.Sec), TimespecNsec, unsafe.Offsetof(its.Value.Nsec))
	checkOffsets(t, "timespec", TimespecSize, unsafe.Sizeof(its.Value))
	iv, v := unix.Timespec{Sec: 1, Nsec: 500}, unix.Timespec{Sec: 3, Nsec: 999999999}
	its = unix.ItimerSpec{Interval: iv, Value: v}
	if got := Itimerspec(iv, v); !bytes.Equal(got, memOf(&its)) {
		t.Errorf("Itimerspec:\n got % x\nwant % x", got, memOf(&its))
	}
}

func TestKstructEpollEvent(t *testing.T) {
	// unix.EpollEvent splits the packed u64 data into Fd and Pad.
	var e unix.EpollEvent
	checkOffsets(t, "epoll_event", EpollEventSize, unsafe.Sizeof(e),
		EpollEventEvents, unsafe.Offsetof(e.Events), EpollEventData, unsafe.Offsetof(e.Fd))
	e = unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: 0x11223344, Pad: 0x55667788}
	if got := EpollEvent(unix.EPOLLIN|unix.EPOLLET, 0x5566778811223344); !bytes.Equal(got, memOf(&e)) {
		t.Errorf("EpollEvent:\n got % x\nwant % x", got, memOf(&e))
	}
}

func TestKstructFlock(t *testing.T) {
	var f unix.Flock_t
	checkOffsets(t, "flock", FlockSize, unsafe.Sizeof(f),
		FlockType, unsafe.Offsetof(f.Type), FlockWhence, unsafe.Offsetof(f.Whence),
		FlockStart, unsafe.Offsetof(f.Start), FlockLen, unsafe.Offsetof(f.Len), FlockPid, unsafe.Offsetof(f.Pid))
	f = unix.Flock_t{Type: unix.F_WRLCK, Whence: unix.SEEK_SET, Start: 100, Len: 0}
	if got := Flock(unix.F_WRLCK, unix.SEEK_SET, 100, 0); !bytes.Equal(got, memOf(&f)) {
		t.Errorf("Flock:\n got % x\nwant % x", got, memOf(&f))
	}
	f = unix.Flock_t{Type: unix.F_RDLCK, Whence: unix.SEEK_SET, Start: 1 << 40, Len: 4096}
	if got := Flock(unix.F_RDLCK, unix.SEEK_SET, 1<<40, 4096); !bytes.Equal(got, memOf(&f)) {
		t.Errorf("Flock:\n got % x\nwant % x", got, memOf(&f))
	}
}

// sigeventUAPI is struct sigevent (asm-generic/siginfo.h) on x86-64:
// union sigval; int signo; int notify; a union of SIGEV_MAX_SIZE (64)
// bytes in all, _tid first. x/sys/unix has no type for it.
type sigeventUAPI struct {
	Value  uint64
	Signo  int32
	Notify int32
	TID    int32
	_      [64 - 20]byte
}

func TestKstructSigevent(t *testing.T) {
	var s sigeventUAPI
	checkOffsets(t, "sigevent", SigeventSize, unsafe.Sizeof(s),
		SigeventValue, unsafe.Offsetof(s.Value), SigeventSigno, unsafe.Offsetof(s.Signo),
		SigeventNotify, unsafe.Offsetof(s.Notify), SigeventTID, unsafe.Offsetof(s.TID))
	checkBytes(t, "Sigevent", Sigevent(0x7ffd12345678, int32(unix.SIGUSR2), 4, 32091), SigeventSize,
		kfield{SigeventValue, 8, 0x7ffd12345678}, kfield{SigeventSigno, 4, uint64(unix.SIGUSR2)},
		kfield{SigeventNotify, 4, 4}, kfield{SigeventTID, 4, 32091})
	// A negative tid (none) keeps its 32-bit two's complement.
	checkBytes(t, "Sigevent(tid -1)", Sigevent(0, 0, 0, -1), SigeventSize, kfield{SigeventTID, 4, 0xffffffff})
}

func TestKstructCapset(t *testing.T) {
	var h unix.CapUserHeader
	checkOffsets(t, "cap header", CapHeaderSize, unsafe.Sizeof(h),
		CapHeaderVersion, unsafe.Offsetof(h.Version), CapHeaderPid, unsafe.Offsetof(h.Pid))
	h = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3, Pid: 42}
	if got := CapHeaderV3(42); !bytes.Equal(got, memOf(&h)) {
		t.Errorf("CapHeaderV3:\n got % x\nwant % x", got, memOf(&h))
	}

	var d [2]unix.CapUserData
	checkOffsets(t, "cap data", CapDataSize, unsafe.Sizeof(d[0]),
		CapDataEffective, unsafe.Offsetof(d[0].Effective), CapDataPermitted, unsafe.Offsetof(d[0].Permitted),
		CapDataInheritable, unsafe.Offsetof(d[0].Inheritable))
	eff, perm, inh := uint64(0x1_0000_0003), uint64(0x3f_0000_00ff), uint64(0x2_0000_0001)
	d = [2]unix.CapUserData{
		{Effective: uint32(eff), Permitted: uint32(perm), Inheritable: uint32(inh)},
		{Effective: uint32(eff >> 32), Permitted: uint32(perm >> 32), Inheritable: uint32(inh >> 32)},
	}
	if got := CapDataV3(eff, perm, inh); !bytes.Equal(got, memOf(&d)) {
		t.Errorf("CapDataV3:\n got % x\nwant % x", got, memOf(&d))
	}
}
