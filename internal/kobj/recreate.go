package kobj

import (
	"encoding/binary"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// tfdIocSetTicks is TFD_IOC_SET_TICKS, _IOW('T', 0, __u64).
const tfdIocSetTicks = 0x40085400

// AddTo appends to b the syscalls that give the process running b a fresh
// copy of every object and mapping in t, on the same descriptor numbers
// and addresses (see the package doc). Memory comes first, epolls last.
// Every entry stops the batch on error except the registration of a
// descriptor t does not re-create (the caller's: it may be closed). A
// table with File objects needs CreateFiles to have run first.
func (t *Table) AddTo(b *ptrace.Batch) { t.AddWithFiles(b, nil) }

// AddWithFiles is AddTo for a table with File objects, made in the copy
// by CreateFiles.
func (t *Table) AddWithFiles(b *ptrace.Batch, files Files) {
	for _, m := range t.Memory {
		t.addMemory(b, m)
	}
	made := map[int]bool{}
	above := 0 // above every number the table puts a description on
	for _, n := range t.FDs() {
		made[n] = true
		above = max(above, n+1)
	}
	// Epolls after every object they may watch (and in the order
	// Capture gave them: an epoll after the epolls it watches).
	for _, epolls := range []bool{false, true} {
		if epolls {
			t.addQueued(b) // every socket on its numbers now
		}
		for i, o := range t.Objects {
			switch {
			case (o.Kind == Epoll) != epolls:
			case o.Kind == Fifo:
				addFifo(b, o, above)
			case o.Kind == File:
				fd, ok := files[i]
				if !ok {
					fd = -1 // CreateFiles did not run: the batch fails on it (EBADF)
				}
				addFile(b, o, fd, above)
			default:
				if o.Kind == Socket && files[i] == staleSocket {
					o.Sock.unlink = true
				}
				addObject(b, o, made, above)
			}
		}
	}
}

func (t *Table) addMemory(b *ptrace.Batch, m Memory) {
	n := int64(m.End - m.Start)
	b.Add(unix.SYS_MMAP, ptrace.Lit(int64(t.Scratch)), ptrace.Lit(n), ptrace.Lit(unix.PROT_READ|unix.PROT_WRITE),
		ptrace.Lit(unix.MAP_SHARED|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE), ptrace.Lit(-1), ptrace.Lit(0))
	if m.Prot&unix.PROT_READ == 0 {
		// The copy's own view of the old pages (mprotect is per
		// process): readable, to be copied.
		b.Add(unix.SYS_MPROTECT, ptrace.Lit(int64(m.Start)), ptrace.Lit(n), ptrace.Lit(unix.PROT_READ))
	}
	le := binary.LittleEndian
	local := le.AppendUint64(le.AppendUint64(nil, t.Scratch), uint64(n))
	remote := le.AppendUint64(le.AppendUint64(nil, m.Start), uint64(n))
	self := b.Add(unix.SYS_GETPID)
	b.Add(unix.SYS_PROCESS_VM_READV, self.Result(), b.Bytes(local), ptrace.Lit(1), b.Bytes(remote), ptrace.Lit(1), ptrace.Lit(0))
	if m.Prot != unix.PROT_READ|unix.PROT_WRITE {
		b.Add(unix.SYS_MPROTECT, ptrace.Lit(int64(t.Scratch)), ptrace.Lit(n), ptrace.Lit(int64(m.Prot)))
	}
	b.Add(unix.SYS_MREMAP, ptrace.Lit(int64(t.Scratch)), ptrace.Lit(n), ptrace.Lit(n),
		ptrace.Lit(unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED), ptrace.Lit(int64(m.Start)))
}

// addObject creates o, puts each of its descriptions on its numbers and
// closes the descriptors it was created on. The object is first moved to
// a number above every one of the table's (F_DUPFD_CLOEXEC from above):
// it was created on the lowest free number, which in a restorer may be
// the very number it must end on, where dup3 would fail (EINVAL) and the
// final close would undo it. In a fork those numbers still hold the
// template's objects, which the dup3 closes.
func addObject(b *ptrace.Batch, o Object, made map[int]bool, above int) {
	nonblock := int64(0)
	if len(o.Descs) == 1 && o.Descs[0].Flags&unix.O_NONBLOCK != 0 {
		nonblock = unix.O_NONBLOCK // EFD_, TFD_, SFD_NONBLOCK alike
	}
	ends := createObject(b, o, made, nonblock)
	for i, e := range ends {
		if e != (ptrace.Arg{}) {
			ends[i] = b.Add(unix.SYS_FCNTL, e, ptrace.Lit(unix.F_DUPFD_CLOEXEC), ptrace.Lit(int64(above))).Result()
			b.Add(unix.SYS_CLOSE, e)
		}
	}
	for _, d := range o.Descs {
		src := ends[d.End]
		if fl := int64(d.Flags & StatusFlags); fl != nonblock { // not as created
			b.Add(unix.SYS_FCNTL, src, ptrace.Lit(unix.F_SETFL), ptrace.Lit(fl))
		}
		putOn(b, src, d.FDs)
	}
	for _, e := range ends {
		if e != (ptrace.Arg{}) {
			b.Add(unix.SYS_CLOSE, e)
		}
	}
}

// createObject adds the syscalls that create o with its state, close on
// exec and nonblocking as given; it returns the created descriptors, by
// end.
func createObject(b *ptrace.Batch, o Object, made map[int]bool, nonblock int64) (ends [2]ptrace.Arg) {
	switch o.Kind {
	case Eventfd:
		flags := nonblock | unix.EFD_CLOEXEC
		if o.Eventfd.Semaphore {
			flags |= unix.EFD_SEMAPHORE
		}
		ends[0] = b.Add(unix.SYS_EVENTFD2, ptrace.Lit(int64(o.Eventfd.Count)), ptrace.Lit(flags)).Result()
	case Timerfd:
		ends[0] = createTimerfd(b, o.Timer, nonblock)
	case Signalfd:
		mask := binary.LittleEndian.AppendUint64(nil, o.SigMask)
		ends[0] = b.Add(unix.SYS_SIGNALFD4, ptrace.Lit(-1), b.Bytes(mask), ptrace.Lit(8), ptrace.Lit(nonblock|unix.SFD_CLOEXEC)).Result()
	case Epoll:
		ends[0] = createEpoll(b, o.Watches, made)
	case SocketPair:
		ends = createSocketPair(b, o)
	case Socket:
		ends[0] = addSocket(b, o, nonblock)
	case Pipe:
		ends = createPipe(b, o)
	}
	return ends
}

// createTimerfd creates a timerfd armed and with the expirations of t.
func createTimerfd(b *ptrace.Batch, t procfs.TimerInfo, nonblock int64) ptrace.Arg {
	fd := b.Add(unix.SYS_TIMERFD_CREATE, ptrace.Lit(int64(t.Clock)), ptrace.Lit(nonblock|unix.TFD_CLOEXEC)).Result()
	if t.Value != 0 || t.Interval != 0 {
		value := t.Value
		if value == 0 {
			value = 1 // armed with only an interval left: fire at once, then periodically
		}
		its := ptrace.Itimerspec(unix.Timespec{Sec: t.Interval / 1e9, Nsec: t.Interval % 1e9},
			unix.Timespec{Sec: value / 1e9, Nsec: value % 1e9})
		b.Add(unix.SYS_TIMERFD_SETTIME, fd, ptrace.Lit(0), b.Bytes(its), ptrace.Lit(0))
	}
	if t.Ticks > 0 {
		b.Add(unix.SYS_IOCTL, fd, ptrace.Lit(tfdIocSetTicks), b.Bytes(binary.LittleEndian.AppendUint64(nil, t.Ticks)))
	}
	return fd
}

// createEpoll creates an epoll with watches; the registration of a
// descriptor made does not hold (the caller's) may fail.
func createEpoll(b *ptrace.Batch, watches []Watch, made map[int]bool) ptrace.Arg {
	fd := b.Add(unix.SYS_EPOLL_CREATE1, ptrace.Lit(unix.EPOLL_CLOEXEC)).Result()
	for _, w := range watches {
		ev := ptrace.EpollEvent(w.Events, w.Data)
		ref := b.Add(unix.SYS_EPOLL_CTL, fd, ptrace.Lit(unix.EPOLL_CTL_ADD), ptrace.Lit(int64(w.FD)), b.Bytes(ev))
		if !made[w.FD] {
			ref.With(ptrace.IgnoreError)
		}
	}
	return fd
}

// createSocketPair creates a socket pair with o's queued messages and
// shutdown states.
func createSocketPair(b *ptrace.Batch, o Object) (ends [2]ptrace.Arg) {
	p := b.Space(8)
	b.Add(unix.SYS_SOCKETPAIR, ptrace.Lit(unix.AF_UNIX), ptrace.Lit(int64(o.SockType)|unix.SOCK_CLOEXEC), ptrace.Lit(0), p)
	ends[0], ends[1] = ptrace.Load32(p, 0), ptrace.Load32(p, 4)
	// What was queued to be read at one end is sent from the other.
	for end, q := range o.Queued {
		for _, m := range q {
			b.Add(unix.SYS_SENDTO, ends[1-end], b.Bytes(m), ptrace.Lit(int64(len(m))), ptrace.Lit(unix.MSG_DONTWAIT), ptrace.Lit(0), ptrace.Lit(0))
		}
	}
	// Shut down once the bytes are in (SHUT_RD 0, WR 1, RDWR 2 are
	// the state bits less one). A stream pair's shutdown sets its
	// peer's mirror state too: one call gives both.
	for end, sh := range o.Shutdown {
		if sh != 0 {
			b.Add(unix.SYS_SHUTDOWN, ends[end], ptrace.Lit(int64(sh)-1))
			if o.SockType != unix.SOCK_DGRAM {
				break
			}
		}
	}
	return ends
}

// createPipe creates a pipe of o's size holding o's bytes.
func createPipe(b *ptrace.Batch, o Object) (ends [2]ptrace.Arg) {
	p := b.Space(8)
	b.Add(unix.SYS_PIPE2, p, ptrace.Lit(unix.O_CLOEXEC))
	ends[0], ends[1] = ptrace.Load32(p, 0), ptrace.Load32(p, 4)
	if o.PipeSize > 0 && o.PipeSize != 65536 {
		b.Add(unix.SYS_FCNTL, ends[1], ptrace.Lit(unix.F_SETPIPE_SZ), ptrace.Lit(int64(o.PipeSize)))
	}
	if len(o.Data) > 0 {
		b.Add(unix.SYS_WRITE, ends[1], b.Bytes(o.Data), ptrace.Lit(int64(len(o.Data))))
	}
	return ends
}

// putOn dup3s src onto each of fds, with its close-on-exec flag.
func putOn(b *ptrace.Batch, src ptrace.Arg, fds []FD) {
	for _, f := range fds {
		ce := int64(0)
		if f.CloseOnExec {
			ce = unix.O_CLOEXEC
		}
		b.Add(unix.SYS_DUP3, src, ptrace.Lit(int64(f.Num)), ptrace.Lit(ce))
	}
}
