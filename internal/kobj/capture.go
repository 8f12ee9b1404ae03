package kobj

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/procfs"
)

// kcmp(2) types (linux/kcmp.h; not in x/sys).
const (
	kcmpFile     = 0
	kcmpEpollTFD = 7
)

// kcmpEpollSlot is struct kcmp_epoll_slot.
type kcmpEpollSlot struct{ efd, tfd, toff uint32 }

// sameFile reports whether fds a and b of pid refer to one open file
// description.
func sameFile(pid, a, b int) (bool, error) {
	r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(pid), kcmpFile, uintptr(a), uintptr(b), 0)
	if e != 0 {
		return false, fmt.Errorf("kcmp fds %d and %d: %w", a, b, e)
	}
	return r == 0, nil
}

// watches reports whether epoll efd's registration by descriptor tfd
// watches the file pid has at tfd now (a registration outlives the
// descriptor it was made by while a duplicate keeps the file open).
func watches(pid, efd, tfd int) (bool, error) {
	slot := kcmpEpollSlot{uint32(efd), uint32(tfd), 0}
	r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(pid), kcmpEpollTFD, uintptr(tfd), uintptr(unsafe.Pointer(&slot)), 0)
	switch e {
	case 0:
		return r == 0, nil
	case unix.EBADF, unix.ENOENT:
		return false, nil // no file at tfd now
	}
	return false, fmt.Errorf("kcmp epoll %d watch %d: %w", efd, tfd, e)
}

// kindOf is the Kind a descriptor's link names, 0 for others.
func kindOf(link string) Kind {
	switch {
	case link == "anon_inode:[eventfd]":
		return Eventfd
	case link == "anon_inode:[timerfd]":
		return Timerfd
	case link == "anon_inode:[signalfd]":
		return Signalfd
	case link == "anon_inode:[eventpoll]":
		return Epoll
	case strings.HasPrefix(link, "pipe:["):
		return Pipe
	}
	return 0
}

// sharedAnon reports whether m is shared anonymous memory ("/dev/zero
// (deleted)" is how maps names MAP_SHARED|MAP_ANONYMOUS; "[anon_shmem:X]"
// once named with PR_SET_VMA_ANON_NAME).
func sharedAnon(m procfs.Mapping) bool {
	return m.Perms.Shared && (strings.HasPrefix(m.Path, "/dev/zero") || strings.HasPrefix(m.Path, "[anon_shmem:"))
}

// Capture reads the objects of the stopped process pid that each of its
// copies must get its own of (see the package doc). The descriptors in
// skip are the caller's and are not looked at. Objects no copy can be
// given its own of make a *SharedError listing all of them.
func Capture(pid int, skip []int) (*Table, error) {
	fds, err := procfs.FDs(pid)
	if err != nil {
		return nil, fmt.Errorf("capture %d: %w", pid, err)
	}
	var refused []procfs.Object
	refuse := func(fd int, link, why string) {
		refused = append(refused, procfs.Object{What: fmt.Sprintf("fd %d (%s)", fd, link), Why: why, FD: fd})
	}
	t := &Table{}
	byFD := map[int]*procfs.FD{}
	// The descriptions, each with the object it belongs to.
	type desc struct {
		first procfs.FD
		d     Desc
	}
	var descs []*desc
	for i := range fds {
		f := &fds[i]
		byFD[f.Num] = f
		if slices.Contains(skip, f.Num) || kindOf(f.Link) == 0 {
			continue
		}
		var into *desc
		for _, d := range descs {
			if d.first.Link != f.Link {
				continue
			}
			same, err := sameFile(pid, d.first.Num, f.Num)
			if err != nil {
				return nil, fmt.Errorf("capture %d: %w", pid, err)
			}
			if same {
				into = d
				break
			}
		}
		if into == nil {
			into = &desc{first: *f, d: Desc{Flags: f.Info.Flags & StatusFlags}}
			if f.Info.Flags&unix.O_ACCMODE == unix.O_WRONLY {
				into.d.End = 1
			}
			descs = append(descs, into)
		}
		into.d.FDs = append(into.d.FDs, FD{Num: f.Num, CloseOnExec: f.Info.Flags&unix.O_CLOEXEC != 0})
	}

	// Objects: one per anon-inode description, one per pipe inode.
	pipes := map[string]int{} // link -> index in t.Objects
	for _, d := range descs {
		f := d.first
		o := Object{Kind: kindOf(f.Link), Descs: []Desc{d.d}}
		switch o.Kind {
		case Eventfd:
			if f.Object.Eventfd == nil {
				refuse(f.Num, f.Link, "its fdinfo shows no eventfd-count")
				continue
			}
			o.Eventfd = *f.Object.Eventfd
		case Timerfd:
			if f.Object.Timer == nil {
				refuse(f.Num, f.Link, "its fdinfo shows no timer setting")
				continue
			}
			if f.Object.Timer.SetFlags&unix.TFD_TIMER_CANCEL_ON_SET != 0 {
				refuse(f.Num, f.Link, "a timerfd with TFD_TIMER_CANCEL_ON_SET cannot be re-created")
				continue
			}
			o.Timer = *f.Object.Timer
		case Signalfd:
			if f.Object.SigMask == nil {
				refuse(f.Num, f.Link, "its fdinfo shows no sigmask")
				continue
			}
			o.SigMask = *f.Object.SigMask
		case Epoll:
			// Watches are checked once every object is known.
		case Pipe:
			if i, ok := pipes[f.Link]; ok {
				p := &t.Objects[i]
				if slices.ContainsFunc(p.Descs, func(e Desc) bool { return e.End == d.d.End }) {
					refuse(f.Num, f.Link, "a pipe end opened twice (two descriptions of one end) is not re-created")
					continue
				}
				p.Descs = append(p.Descs, d.d)
				continue
			}
			pipes[f.Link] = len(t.Objects)
		}
		t.Objects = append(t.Objects, o)
	}

	pidfd := -1
	defer func() {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
	}()
	data := 0
	var kept []Object
	made := map[int]bool{} // descriptor numbers the table re-creates
	for _, o := range t.Objects {
		if o.Kind == Pipe {
			if len(o.Descs) != 2 {
				// The other end is outside (or skipped): a copy would
				// share it with whoever holds that end.
				d := o.Descs[0]
				refuse(d.FDs[0].Num, byFD[d.FDs[0].Num].Link, "a pipe whose other end is outside the process: every copy reads and writes the same one")
				continue
			}
			if pidfd < 0 {
				if pidfd, err = unix.PidfdOpen(pid, 0); err != nil {
					return nil, fmt.Errorf("capture %d: pidfd: %w", pid, err)
				}
			}
			r := o.Descs[0].FDs[0].Num
			if o.Descs[0].End != 0 {
				r = o.Descs[1].FDs[0].Num
			}
			if o.PipeSize, o.Data, err = peekPipe(pidfd, r); err != nil {
				return nil, fmt.Errorf("capture %d: pipe fd %d: %w", pid, r, err)
			}
			if data += len(o.Data); data > MaxData {
				refuse(r, byFD[r].Link, fmt.Sprintf("pipes holding more than %d bytes in all are not re-created", MaxData))
				continue
			}
			slices.SortFunc(o.Descs, func(a, b Desc) int { return a.End - b.End })
		}
		kept = append(kept, o)
		for _, d := range o.Descs {
			for _, f := range d.FDs {
				made[f.Num] = true
			}
		}
	}
	t.Objects = kept

	// Each epoll's watches: by a descriptor that still holds the file
	// watched, and made before the epoll when that is an epoll too.
	for i := range t.Objects {
		o := &t.Objects[i]
		if o.Kind != Epoll {
			continue
		}
		efd := o.Descs[0].FDs[0].Num
		for _, w := range byFD[efd].Object.Watches {
			ok, err := watches(pid, efd, w.FD)
			if err != nil {
				return nil, fmt.Errorf("capture %d: %w", pid, err)
			}
			if !ok {
				refuse(efd, byFD[efd].Link, fmt.Sprintf("it watches a file by descriptor %d, which holds another file now or none", w.FD))
				continue
			}
			o.Watches = append(o.Watches, Watch{FD: w.FD, Events: w.Events, Data: w.Data})
		}
	}
	if err := orderEpolls(t.Objects); err != nil {
		return nil, fmt.Errorf("capture %d: %w", pid, err)
	}

	// Shared anonymous memory, and a hole to build its copies in.
	maps, err := procfs.Maps(pid)
	if err != nil {
		return nil, fmt.Errorf("capture %d: %w", pid, err)
	}
	var memory, largest uint64
	for _, m := range maps {
		if !sharedAnon(m) {
			continue
		}
		var prot int
		if m.Perms.Read {
			prot |= unix.PROT_READ
		}
		if m.Perms.Write {
			prot |= unix.PROT_WRITE
		}
		if m.Perms.Exec {
			prot |= unix.PROT_EXEC
		}
		t.Memory = append(t.Memory, Memory{Start: m.Start, End: m.End, Prot: prot})
		memory += m.End - m.Start
		largest = max(largest, m.End-m.Start)
	}
	if memory > MaxMemory {
		refused = append(refused, procfs.Object{What: fmt.Sprintf("shared anonymous memory (%d MiB)", memory>>20),
			Why: fmt.Sprintf("more than %d MiB is not copied per instance", MaxMemory>>20), FD: -1})
	}
	if largest > 0 {
		if t.Scratch, err = hole(maps, largest); err != nil {
			return nil, fmt.Errorf("capture %d: %w", pid, err)
		}
	}

	// What else the copies would share: everything SharedObjects finds
	// that the table does not re-create.
	objs, err := procfs.SharedObjects(pid, append(slices.Clone(skip), t.FDs()...))
	if err != nil {
		return nil, fmt.Errorf("capture %d: %w", pid, err)
	}
	for _, o := range objs {
		if o.FD >= 0 && slices.ContainsFunc(refused, func(r procfs.Object) bool { return r.FD == o.FD }) {
			continue // refused above, with a closer reason
		}
		if o.FD < 0 && slices.ContainsFunc(t.Memory, func(m Memory) bool { return m.Start == o.Start }) {
			continue
		}
		refused = append(refused, o)
	}
	if len(refused) > 0 {
		slices.SortStableFunc(refused, func(a, b procfs.Object) int { return a.FD - b.FD })
		return nil, &SharedError{Pid: pid, Objects: refused}
	}
	if len(t.Objects) > MaxObjects || t.Len() > MaxFDs {
		return nil, fmt.Errorf("capture %d: %d objects on %d descriptors (at most %d on %d are re-created): %w",
			pid, len(t.Objects), t.Len(), MaxObjects, MaxFDs, &SharedError{Pid: pid})
	}
	return t, nil
}

// peekPipe reads a pipe's capacity and the bytes it holds through a copy
// of its read end, leaving them in the pipe (tee(2) duplicates, it does
// not consume).
func peekPipe(pidfd, rfd int) (size int, data []byte, err error) {
	r, err := unix.PidfdGetfd(pidfd, rfd, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("pidfd_getfd: %w", err)
	}
	defer unix.Close(r)
	if size, err = unix.FcntlInt(uintptr(r), unix.F_GETPIPE_SZ, 0); err != nil {
		return 0, nil, err
	}
	n, err := unix.IoctlGetInt(r, unix.TIOCINQ) // FIONREAD
	if err != nil || n == 0 {
		return size, nil, err
	}
	if n > MaxData {
		return size, make([]byte, n), nil // refused by the caller's total
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return 0, nil, err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, max(n, 4096)); err != nil {
		return 0, nil, err
	}
	got, err := unix.Tee(r, p[1], n, unix.SPLICE_F_NONBLOCK)
	if err != nil {
		return 0, nil, fmt.Errorf("tee: %w", err)
	}
	data = make([]byte, got)
	if _, err := unix.Read(p[0], data); err != nil {
		return 0, nil, err
	}
	if int(got) != n {
		return 0, nil, fmt.Errorf("tee copied %d of %d bytes", got, n)
	}
	return size, data, nil
}

// orderEpolls moves each epoll after the epolls it watches (the kernel
// forbids loops, so an order exists).
func orderEpolls(objs []Object) error {
	epollAt := map[int]int{} // fd -> index
	var eps []int
	for i, o := range objs {
		if o.Kind != Epoll {
			continue
		}
		eps = append(eps, i)
		for _, d := range o.Descs {
			for _, f := range d.FDs {
				epollAt[f.Num] = i
			}
		}
	}
	if len(eps) < 2 {
		return nil
	}
	var order []Object
	done := map[int]bool{}
	var visit func(i, depth int) error
	visit = func(i, depth int) error {
		if done[i] {
			return nil
		}
		if depth > len(eps) {
			return errors.New("epoll instances watch each other in a loop")
		}
		for _, w := range objs[i].Watches {
			if j, ok := epollAt[w.FD]; ok && j != i {
				if err := visit(j, depth+1); err != nil {
					return err
				}
			}
		}
		done[i] = true
		order = append(order, objs[i])
		return nil
	}
	for _, i := range eps {
		if err := visit(i, 0); err != nil {
			return err
		}
	}
	// Put them back into the epoll slots, in dependency order.
	for k, i := range eps {
		objs[i] = order[k]
	}
	return nil
}

// hole finds a page-aligned range of size bytes that no mapping in maps
// (sorted by address) covers, above the first 4 GiB.
func hole(maps []procfs.Mapping, size uint64) (uint64, error) {
	const lo, hi = 1 << 32, 0x7ff000000000
	size = (size + 0xfff) &^ 0xfff
	at := uint64(lo)
	for _, m := range maps {
		if m.End <= at {
			continue
		}
		if m.Start >= at+size {
			break
		}
		at = (m.End + 0xfff) &^ 0xfff
	}
	if at+size > hi {
		return 0, fmt.Errorf("no free range of %s in the address space", strconv.FormatUint(size, 10))
	}
	return at, nil
}
