package kobj

import (
	"bytes"
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
	case strings.HasPrefix(link, "socket:["):
		return SocketPair // if it is one: objects asks sock_diag
	}
	return 0
}

// socketIno is the inode a "socket:[INO]" link names.
func socketIno(link string) uint64 {
	n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
	return n
}

// SharedAnon reports whether m is shared anonymous memory ("/dev/zero
// (deleted)" is how maps names MAP_SHARED|MAP_ANONYMOUS; "[anon_shmem:X]"
// once named with PR_SET_VMA_ANON_NAME).
func SharedAnon(m procfs.Mapping) bool {
	return m.Perms.Shared && (strings.HasPrefix(m.Path, "/dev/zero") || strings.HasPrefix(m.Path, "[anon_shmem:"))
}

// Capture reads the objects of the stopped process pid that each of its
// copies must get its own of (see the package doc). The descriptors in
// skip are the caller's and are not looked at. Objects no copy can be
// given its own of make a *SharedError listing all of them.
func Capture(pid int, skip []int) (*Table, error) {
	return capture(pid, skip, true)
}

// CaptureObjects is Capture without the refusal of other shared objects:
// it refuses only what it cannot capture among the kinds it re-creates
// (a pipe with an end outside, say), and leaves the rest of the
// descriptor table and the mappings to the caller (a checkpoint, which
// has rules of its own for files and sockets).
func CaptureObjects(pid int, skip []int) (*Table, error) {
	return capture(pid, skip, false)
}

func capture(pid int, skip []int, others bool) (*Table, error) {
	c := &capturer{pid: pid, skip: skip, t: &Table{}, byFD: map[int]*procfs.FD{}, pidfd: -1}
	defer func() {
		if c.pidfd >= 0 {
			unix.Close(c.pidfd)
		}
	}()
	steps := []func() error{c.objects, c.pipes, c.sockets, c.watches, c.memory}
	if others {
		steps = append(steps, c.others)
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("capture %d: %w", pid, err)
		}
	}
	if len(c.refused) > 0 {
		slices.SortStableFunc(c.refused, func(a, b procfs.Object) int { return a.FD - b.FD })
		return nil, &SharedError{Pid: pid, Objects: c.refused}
	}
	if len(c.t.Objects) > MaxObjects || c.t.Len() > MaxFDs {
		return nil, fmt.Errorf("capture %d: %d objects on %d descriptors (at most %d on %d are re-created): %w",
			pid, len(c.t.Objects), c.t.Len(), MaxObjects, MaxFDs, &SharedError{Pid: pid})
	}
	return c.t, nil
}

// capturer is Capture's state, built up by its steps in order.
type capturer struct {
	pid     int
	skip    []int
	t       *Table
	byFD    map[int]*procfs.FD
	refused []procfs.Object
	pidfd   int // opened on demand
}

func (c *capturer) refuse(fd int, why string) {
	c.refused = append(c.refused, procfs.Object{What: fmt.Sprintf("fd %d (%s)", fd, c.byFD[fd].Link), Why: why, FD: fd})
}

// objects groups the descriptors of the kinds kobj re-creates into open
// file descriptions (kcmp), and those into objects: one per anon-inode
// description, one per pipe inode. Each takes its state from its fdinfo.
func (c *capturer) objects() error {
	descs, err := c.descriptions()
	if err != nil {
		return err
	}
	g := grouping{pipes: map[string]int{}, pairs: map[uint64]int{}}
	for _, d := range descs {
		f := d.first
		o := Object{Kind: kindOf(f.Link), Descs: []Desc{d.d}}
		if o.Kind == SocketPair && g.socks == nil {
			if g.socks, err = unixSockets(c.pid); err != nil {
				return err
			}
		}
		keep := true // a new object
		switch o.Kind {
		case Eventfd, Timerfd, Signalfd:
			if why := anonState(f, &o); why != "" {
				c.refuse(f.Num, why)
				keep = false
			}
		case Pipe:
			keep = c.pipeEnd(&g, f, d.d)
		case SocketPair:
			keep = c.pairEnd(&g, f, d.d, &o)
		}
		if keep {
			c.t.Objects = append(c.t.Objects, o)
		}
	}
	return nil
}

// description is an open file description of the process: the first
// descriptor found on it, and what the table records of it.
type description struct {
	first procfs.FD
	d     Desc
}

// descriptions indexes the process's descriptors in c.byFD and groups
// those of the kinds kobj re-creates (and not skipped) by open file
// description, in the order of their first descriptors.
func (c *capturer) descriptions() ([]*description, error) {
	fds, err := procfs.FDs(c.pid)
	if err != nil {
		return nil, err
	}
	var descs []*description
	for i := range fds {
		f := &fds[i]
		c.byFD[f.Num] = f
		if slices.Contains(c.skip, f.Num) || kindOf(f.Link) == 0 {
			continue
		}
		var into *description
		for _, d := range descs {
			if d.first.Link != f.Link {
				continue
			}
			same, err := sameFile(c.pid, d.first.Num, f.Num)
			if err != nil {
				return nil, err
			}
			if same {
				into = d
				break
			}
		}
		if into == nil {
			into = &description{first: *f, d: Desc{Flags: f.Info.Flags & StatusFlags}}
			if f.Info.Flags&unix.O_ACCMODE == unix.O_WRONLY {
				into.d.End = 1
			}
			descs = append(descs, into)
		}
		into.d.FDs = append(into.d.FDs, FD{Num: f.Num, CloseOnExec: f.Info.Flags&unix.O_CLOEXEC != 0})
	}
	return descs, nil
}

// grouping is what objects has made of pipes and socket pairs so far,
// for the description of a second end to join its object.
type grouping struct {
	pipes map[string]int        // link -> index in t.Objects
	socks map[uint64]unixSocket // the process's unix sockets, read at the first pair
	pairs map[uint64]int        // socket inode -> index in t.Objects
}

// anonState gives an eventfd, timerfd or signalfd object the state its
// fdinfo shows, or says why it cannot: the state is not there or cannot
// be re-created.
func anonState(f procfs.FD, o *Object) (why string) {
	switch o.Kind {
	case Eventfd:
		if f.Object.Eventfd == nil {
			return "its fdinfo shows no eventfd-count"
		}
		o.Eventfd = *f.Object.Eventfd
	case Timerfd:
		if f.Object.Timer == nil {
			return "its fdinfo shows no timer setting"
		}
		if f.Object.Timer.SetFlags&unix.TFD_TIMER_CANCEL_ON_SET != 0 {
			return "a timerfd with TFD_TIMER_CANCEL_ON_SET cannot be re-created"
		}
		o.Timer = *f.Object.Timer
	case Signalfd:
		if f.Object.SigMask == nil {
			return "its fdinfo shows no sigmask"
		}
		o.SigMask = *f.Object.SigMask
	}
	return ""
}

// pipeEnd adds description d of a pipe to the pipe's object where one was
// made already (false), refusing a second description of one end; true
// for a pipe's first, which makes the object.
func (c *capturer) pipeEnd(g *grouping, f procfs.FD, d Desc) bool {
	i, ok := g.pipes[f.Link]
	if !ok {
		g.pipes[f.Link] = len(c.t.Objects)
		return true
	}
	p := &c.t.Objects[i]
	if slices.ContainsFunc(p.Descs, func(e Desc) bool { return e.End == d.End }) {
		c.refuse(f.Num, "a pipe end opened twice (two descriptions of one end) is not re-created")
		return false
	}
	p.Descs = append(p.Descs, d)
	return false
}

// pairEnd is pipeEnd for a unix socket pair both of whose ends the
// process may hold: true for the first end found (o made of it), false
// for the second (added to its peer's object as end 1) and for a socket
// that is not one end of a pair.
func (c *capturer) pairEnd(g *grouping, f procfs.FD, d Desc, o *Object) bool {
	ino := socketIno(f.Link)
	us, ok := g.socks[ino]
	if !ok || us.Peer == 0 || us.Named {
		return false // not a unix socket pair: others() says why it is shared
	}
	if i, ok := g.pairs[us.Peer]; ok {
		p := &c.t.Objects[i]
		if len(p.Descs) == 2 {
			c.refuse(f.Num, "a socket pair end opened twice is not re-created")
			return false
		}
		d.End = 1
		p.Descs = append(p.Descs, d)
		p.Shutdown[1] = us.Shutdown
		if p.SockType != unix.SOCK_DGRAM && !mirrored(p.Shutdown) {
			// Shut down before it was connected: no
			// shutdown(2) of a connected pair makes that.
			c.refuse(f.Num, fmt.Sprintf("a socket pair whose ends' shutdown states do not mirror each other (%d, %d) is not re-created", p.Shutdown[0], p.Shutdown[1]))
		}
		return false
	}
	if peer, ok := g.socks[us.Peer]; !ok || peer.Peer != ino {
		return false // its peer is not this socket's: not a pair
	}
	o.SockType = us.Type
	o.Shutdown[0] = us.Shutdown
	g.pairs[ino] = len(c.t.Objects)
	return true
}

// mirrored reports whether a stream pair's shutdown states are each
// other's mirror (one end's send is the other's receive), as shutdown(2)
// of a connected pair leaves them.
func mirrored(sh [2]uint8) bool {
	flip := func(b uint8) uint8 { return (b&1)<<1 | (b&2)>>1 }
	return sh[1] == flip(sh[0])
}

// sockets keeps the socket pairs whose two ends the process holds, each
// with the messages queued at each end (read with MSG_PEEK, so the
// process keeps them); one with an end outside is left to others().
func (c *capturer) sockets() error {
	var kept []Object
	for _, o := range c.t.Objects {
		if o.Kind != SocketPair {
			kept = append(kept, o)
			continue
		}
		if len(o.Descs) != 2 {
			continue // the peer is outside: others() refuses it
		}
		if c.pidfd < 0 {
			var err error
			if c.pidfd, err = unix.PidfdOpen(c.pid, 0); err != nil {
				return fmt.Errorf("pidfd: %w", err)
			}
		}
		ok := true
		for end, d := range o.Descs {
			q, why, err := peekSocket(c.pidfd, d.FDs[0].Num, o.SockType)
			if err != nil {
				return fmt.Errorf("socket fd %d: %w", d.FDs[0].Num, err)
			}
			if why != "" {
				c.refuse(d.FDs[0].Num, why)
				ok = false
				break
			}
			o.Queued[end] = q
		}
		if ok {
			kept = append(kept, o)
		}
	}
	c.t.Objects = kept
	return nil
}

// peekSocket reads the messages queued at a unix socket through a copy of
// it, leaving them queued: peeks from a peek offset (SO_PEEK_OFF) that
// each peek advances, then the offset is turned off again. The process is
// stopped, so nothing else reads meanwhile. why is set for a queue that
// cannot be re-created (descriptors or credentials in flight, too much).
func peekSocket(pidfd, fd, typ int) (queued [][]byte, why string, err error) {
	s, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return nil, "", fmt.Errorf("pidfd_getfd: %w", err)
	}
	defer unix.Close(s)
	if pc, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PASSCRED); err == nil && pc != 0 {
		return nil, "a socket pair end with SO_PASSCRED is not re-created", nil
	}
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); err != nil {
		return nil, "", fmt.Errorf("SO_PEEK_OFF: %w", err)
	}
	defer unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF, -1)
	buf := make([]byte, MaxQueued+1)
	oob := make([]byte, unix.CmsgSpace(64*4))
	total := 0
	for {
		n, oobn, _, _, err := unix.Recvmsg(s, buf, oob, unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			return nil, "", fmt.Errorf("peek: %w", err)
		}
		if oobn > 0 {
			if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, cm := range cms {
					if fds, err := unix.ParseUnixRights(&cm); err == nil {
						for _, f := range fds {
							unix.Close(f) // installed in us by the peek
						}
					}
				}
			}
			return nil, "a socket pair with descriptors or credentials in flight is not re-created", nil
		}
		if n == 0 && typ == unix.SOCK_STREAM {
			break
		}
		if total += n; total > MaxQueued || len(queued) >= MaxMessages {
			return nil, fmt.Sprintf("a socket pair end with more than %d bytes or %d messages queued is not re-created", MaxQueued, MaxMessages), nil
		}
		queued = append(queued, append([]byte(nil), buf[:n]...))
	}
	if typ == unix.SOCK_STREAM && len(queued) > 1 {
		queued = [][]byte{bytes.Join(queued, nil)}
	}
	return queued, "", nil
}

// pipes keeps the pipes whose two ends the process holds, each with its
// capacity and the bytes it holds; one with an end outside is refused.
func (c *capturer) pipes() error {
	var kept []Object
	data := 0
	for _, o := range c.t.Objects {
		if o.Kind != Pipe {
			kept = append(kept, o)
			continue
		}
		if len(o.Descs) != 2 {
			// The other end is outside (or skipped): a copy would share
			// it with whoever holds that end.
			c.refuse(o.Descs[0].FDs[0].Num, "a pipe whose other end is outside the process: every copy reads and writes the same one")
			continue
		}
		slices.SortFunc(o.Descs, func(a, b Desc) int { return a.End - b.End })
		if c.pidfd < 0 {
			var err error
			if c.pidfd, err = unix.PidfdOpen(c.pid, 0); err != nil {
				return fmt.Errorf("pidfd: %w", err)
			}
		}
		r := o.Descs[0].FDs[0].Num
		var err error
		if o.PipeSize, o.Data, err = peekPipe(c.pidfd, r); err != nil {
			return fmt.Errorf("pipe fd %d: %w", r, err)
		}
		if data += len(o.Data); data > MaxData {
			c.refuse(r, fmt.Sprintf("pipes holding more than %d bytes in all are not re-created", MaxData))
			continue
		}
		kept = append(kept, o)
	}
	c.t.Objects = kept
	return nil
}

// watches gives each epoll its registrations, each by a descriptor that
// still holds the file it watches, and orders the epolls so that one is
// made after those it watches.
func (c *capturer) watches() error {
	for i := range c.t.Objects {
		o := &c.t.Objects[i]
		if o.Kind != Epoll {
			continue
		}
		efd := o.Descs[0].FDs[0].Num
		seen := map[int]bool{}
		for _, w := range c.byFD[efd].Object.Watches {
			if seen[w.FD] {
				// Files registered by one number that was closed and
				// reused: one registration per number is re-created.
				c.refuse(efd, fmt.Sprintf("it watches several files by descriptor %d (closed and reused since)", w.FD))
				break
			}
			seen[w.FD] = true
			ok, err := watches(c.pid, efd, w.FD)
			if err != nil {
				return err
			}
			if !ok {
				c.refuse(efd, fmt.Sprintf("it watches a file by descriptor %d, which holds another file now or none", w.FD))
				continue
			}
			o.Watches = append(o.Watches, Watch{FD: w.FD, Events: w.Events, Data: w.Data})
		}
	}
	return orderEpolls(c.t.Objects)
}

// memory finds the shared anonymous mappings, and a hole to build their
// copies in.
func (c *capturer) memory() error {
	maps, err := procfs.Maps(c.pid)
	if err != nil {
		return err
	}
	var total, largest uint64
	for _, m := range maps {
		if !SharedAnon(m) {
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
		c.t.Memory = append(c.t.Memory, Memory{Start: m.Start, End: m.End, Prot: prot})
		total += m.End - m.Start
		largest = max(largest, m.End-m.Start)
	}
	if total > MaxMemory {
		c.refused = append(c.refused, procfs.Object{What: fmt.Sprintf("shared anonymous memory (%d MiB)", total>>20),
			Why: fmt.Sprintf("more than %d MiB is not copied per instance", MaxMemory>>20), FD: -1})
	}
	if largest > 0 {
		c.t.Scratch, err = hole(maps, largest)
	}
	return err
}

// others refuses everything else SharedObjects finds that copies would
// share (and the table does not re-create).
func (c *capturer) others() error {
	objs, err := procfs.SharedObjects(c.pid, append(slices.Clone(c.skip), c.t.FDs()...))
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.FD >= 0 && slices.ContainsFunc(c.refused, func(r procfs.Object) bool { return r.FD == o.FD }) {
			continue // refused already, with a closer reason
		}
		if o.FD < 0 && slices.ContainsFunc(c.t.Memory, func(m Memory) bool { return m.Start == o.Start }) {
			continue
		}
		c.refused = append(c.refused, o)
	}
	return nil
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
	return peekPipeFD(r)
}

// peekPipeFD is peekPipe through r, a readable descriptor of the pipe.
func peekPipeFD(r int) (size int, data []byte, err error) {
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
