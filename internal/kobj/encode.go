package kobj

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// The encoding of a Table (little-endian; docs/IMAGE.md draws it):
//
//	header  magic "CZKO" u32, version u16, 0 u16, objects u32, memory u32, scratch u64
//	object  kind u8 (1 eventfd, 2 timerfd, 3 signalfd, 4 epoll, 5 pipe, 6 socket pair, 7 file, 8 FIFO, 9 socket), descs u8, 0 u16, then by kind:
//	          eventfd  count u64, semaphore u8
//	          timerfd  clock i32, setflags i32, ticks u64, value i64, interval i64 (ns)
//	          signalfd mask u64
//	          epoll    watches u32, then per watch fd i32, events u32, data u64
//	          pipe     size i32, bytes u32, then the bytes
//	          socket pair  type i32, (version 3) shutdown u8 per end (1 receive, 2 send), then per end: messages u32, then per
//	                   message bytes u32 and the bytes (queued to be read there)
//	          file     (version 2) kind u8 (1 memfd, 2 ghost), 0 u8, 0 u16, name u32 and its
//	                   bytes, mode u32, uid u32, gid u32, size i64, atime sec i64 nsec i64,
//	                   mtime sec i64 nsec i64, seals i32, extents u32, then per extent
//	                   offset i64, bytes u32 and the bytes
//	          FIFO     (version 3) path u32 and its bytes, size i32, bytes u32, then the bytes
//	          socket   (version 4) family u8, type u8, protocol u8, shutdown u8, listening u8, 0 u8,
//	                   backlog u16, address u8 and its bytes, peer u8 and its bytes (raw
//	                   sockaddr_in/in6), options u8, then per option level i32, name i32, value i32,
//	                   device u8 and its name, linger set u8, on u8, 0 u16, seconds i32, SO_RCVTIMEO i64 and
//	                   SO_SNDTIMEO i64 (µs), orphan u8,
//	                   datagrams u8, then per datagram from u8 and its bytes, bytes u32 and the bytes
//	        then per desc: end u8, flags u32, (a file's only) offset i64, fds u32,
//	          then per fd num i32, cloexec u8
//
// Versions 1 (no file objects, no offsets), 2 (no FIFOs) and 3 (no
// sockets) are read too.
//
//	memory  start u64, end u64, prot i32
const (
	encodeMagic   = 0x4f4b5a43 // "CZKO"
	EncodeVersion = 4
	maxFDNum      = 1 << 20 // fs.nr_open's ceiling
)

// Encode is t's binary form, for an image.
func (t *Table) Encode() []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, encodeMagic)
	b = le.AppendUint16(b, EncodeVersion)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, uint32(len(t.Objects)))
	b = le.AppendUint32(b, uint32(len(t.Memory)))
	b = le.AppendUint64(b, t.Scratch)
	for _, o := range t.Objects {
		b = append(b, byte(o.Kind), byte(len(o.Descs)), 0, 0)
		b = encodeState(b, o)
		b = encodeDescs(b, o)
	}
	for _, m := range t.Memory {
		b = le.AppendUint64(b, m.Start)
		b = le.AppendUint64(b, m.End)
		b = le.AppendUint32(b, uint32(m.Prot))
	}
	return b
}

// encodeState appends the kind's part of o, as decodeState reads it.
func encodeState(b []byte, o Object) []byte {
	le := binary.LittleEndian
	switch o.Kind {
	case Eventfd:
		b = le.AppendUint64(b, o.Eventfd.Count)
		sem := byte(0)
		if o.Eventfd.Semaphore {
			sem = 1
		}
		b = append(b, sem)
	case Timerfd:
		b = le.AppendUint32(b, uint32(o.Timer.Clock))
		b = le.AppendUint32(b, uint32(o.Timer.SetFlags))
		b = le.AppendUint64(b, o.Timer.Ticks)
		b = le.AppendUint64(b, uint64(o.Timer.Value))
		b = le.AppendUint64(b, uint64(o.Timer.Interval))
	case Signalfd:
		b = le.AppendUint64(b, o.SigMask)
	case Epoll:
		b = le.AppendUint32(b, uint32(len(o.Watches)))
		for _, w := range o.Watches {
			b = le.AppendUint32(b, uint32(w.FD))
			b = le.AppendUint32(b, w.Events)
			b = le.AppendUint64(b, w.Data)
		}
	case Pipe:
		b = le.AppendUint32(b, uint32(o.PipeSize))
		b = le.AppendUint32(b, uint32(len(o.Data)))
		b = append(b, o.Data...)
	case SocketPair:
		b = le.AppendUint32(b, uint32(o.SockType))
		b = append(b, o.Shutdown[0], o.Shutdown[1])
		for _, q := range o.Queued {
			b = le.AppendUint32(b, uint32(len(q)))
			for _, m := range q {
				b = le.AppendUint32(b, uint32(len(m)))
				b = append(b, m...)
			}
		}
	case File:
		b = encodeFile(b, o.File)
	case Fifo:
		b = le.AppendUint32(b, uint32(len(o.Path)))
		b = append(b, o.Path...)
		b = le.AppendUint32(b, uint32(o.PipeSize))
		b = le.AppendUint32(b, uint32(len(o.Data)))
		b = append(b, o.Data...)
	case Socket:
		b = encodeSocket(b, o.Sock)
	}
	return b
}

// encodeDescs appends o's descriptions, as decodeDescs reads them.
func encodeDescs(b []byte, o Object) []byte {
	le := binary.LittleEndian
	for _, d := range o.Descs {
		b = append(b, byte(d.End))
		b = le.AppendUint32(b, d.Flags)
		if o.Kind == File {
			b = le.AppendUint64(b, uint64(d.Pos))
		}
		b = le.AppendUint32(b, uint32(len(d.FDs)))
		for _, f := range d.FDs {
			b = le.AppendUint32(b, uint32(f.Num))
			ce := byte(0)
			if f.CloseOnExec {
				ce = 1
			}
			b = append(b, ce)
		}
	}
	return b
}

// reader decodes little-endian fields; the first short read sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = errors.New("truncated")
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// Decode parses and validates an encoded Table. Anything but a table
// Encode could have written from a Capture is an error wrapping
// errdefs.ErrInvalid.
func Decode(b []byte) (*Table, error) {
	t, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("kernel objects: %w: %w", err, errdefs.ErrInvalid)
	}
	return t, nil
}

func decode(b []byte) (*Table, error) {
	r := &reader{b: b}
	if r.u32() != encodeMagic {
		return nil, errors.New("bad magic")
	}
	version := r.u16()
	if version < 1 || version > EncodeVersion {
		return nil, fmt.Errorf("version %d, this build reads 1 to %d", version, EncodeVersion)
	}
	r.u16()
	nObj, nMem := r.u32(), r.u32()
	t := &Table{Scratch: r.u64()}
	if r.err != nil {
		return nil, r.err
	}
	if nObj > MaxObjects || nMem > MaxObjects {
		return nil, fmt.Errorf("%d objects and %d mappings (at most %d each)", nObj, nMem, MaxObjects)
	}
	budget := &limits{seen: map[int]bool{}, version: version}
	for i := range int(nObj) {
		o, err := decodeObject(r, budget)
		if err != nil {
			return nil, fmt.Errorf("object %d: %w", i, err)
		}
		t.Objects = append(t.Objects, o)
	}
	for _, a := range budget.senders {
		if !budget.unixNames[string(a)] {
			return nil, fmt.Errorf("a datagram queued from %q, which no datagram socket of the table is bound to", a)
		}
	}
	var total, largest uint64
	for i := range int(nMem) {
		m := Memory{Start: r.u64(), End: r.u64(), Prot: int(int32(r.u32()))}
		if r.err != nil {
			return nil, r.err
		}
		if m.Start%4096 != 0 || m.End%4096 != 0 || m.Start >= m.End || m.End > 1<<47 ||
			m.Prot&^(unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC) != 0 {
			return nil, fmt.Errorf("mapping %d: [%#x, %#x) prot %#x", i, m.Start, m.End, m.Prot)
		}
		if i > 0 && m.Start < t.Memory[i-1].End {
			return nil, fmt.Errorf("mapping %d overlaps or precedes the one before", i)
		}
		total += m.End - m.Start
		largest = max(largest, m.End-m.Start)
		t.Memory = append(t.Memory, m)
	}
	if total > MaxMemory {
		return nil, fmt.Errorf("%d bytes of shared memory (at most %d)", total, MaxMemory)
	}
	if nMem > 0 {
		s := t.Scratch
		if s%4096 != 0 || s == 0 || s+largest > 1<<47 {
			return nil, fmt.Errorf("scratch range %#x", s)
		}
		for _, m := range t.Memory {
			if s < m.End && m.Start < s+largest {
				return nil, fmt.Errorf("scratch range %#x overlaps mapping %#x", s, m.Start)
			}
		}
	} else if t.Scratch != 0 {
		return nil, errors.New("scratch range without mappings")
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the table", len(r.b))
	}
	return t, nil
}

// limits is what the objects decoded so far used of a table's bounds.
type limits struct {
	seen           map[int]bool // descriptor numbers
	watches, bytes int
	fileBytes      int // data in File objects
	extents        int
	version        uint16
	// unixNames are the unix socket addresses bound so far, true for a
	// datagram socket's (what a later one may connect to).
	unixNames map[string]bool
	// senders are the addresses queued datagrams came from: each must
	// be a datagram socket's of the table (checked at its end).
	senders [][]byte
}

// decodeObject reads one object and checks it against the kind's rules
// and the table's limits.
func decodeObject(r *reader, l *limits) (Object, error) {
	o := Object{Kind: Kind(r.u8())}
	nDesc := int(r.u8())
	r.u16()
	if err := decodeState(r, l, &o); err != nil {
		return o, err
	}
	if err := decodeDescs(r, l, &o, nDesc); err != nil {
		return o, err
	}
	return o, r.err
}

// decodeState reads the kind's part of o (what follows its header), the
// kinds a table of an older version cannot hold refused.
func decodeState(r *reader, l *limits, o *Object) error {
	switch o.Kind {
	case Eventfd:
		return decodeEventfd(r, o)
	case Timerfd:
		return decodeTimerfd(r, o)
	case Signalfd:
		o.SigMask = r.u64()
		return nil
	case Epoll:
		return decodeEpoll(r, l, o)
	case Pipe:
		return decodePipe(r, l, o)
	case SocketPair:
		return decodeSocketPair(r, l, o)
	case File:
		if l.version < 2 {
			return errors.New("a file object in a version 1 table")
		}
		var err error
		o.File, err = decodeFile(r, l)
		return err
	case Fifo:
		if l.version < 3 {
			return errors.New("a FIFO object in a version 1 or 2 table")
		}
		return decodeFifo(r, l, o)
	case Socket:
		if l.version < 4 {
			return errors.New("a socket object in a table of version 3 or less")
		}
		var err error
		o.Sock, err = decodeSocket(r, l)
		return err
	default:
		return fmt.Errorf("unknown kind %d", o.Kind)
	}
}

func decodeEventfd(r *reader, o *Object) error {
	o.Eventfd.Count = r.u64()
	sem, err := flag(r.u8())
	if err != nil || o.Eventfd.Count == ^uint64(0) {
		return errors.New("bad eventfd state")
	}
	o.Eventfd.Semaphore = sem
	return nil
}

func decodeTimerfd(r *reader, o *Object) error {
	o.Timer.Clock = int(int32(r.u32()))
	o.Timer.SetFlags = int(int32(r.u32()))
	o.Timer.Ticks = r.u64()
	o.Timer.Value, o.Timer.Interval = int64(r.u64()), int64(r.u64())
	switch o.Timer.Clock {
	case unix.CLOCK_REALTIME, unix.CLOCK_MONOTONIC, unix.CLOCK_BOOTTIME, unix.CLOCK_REALTIME_ALARM, unix.CLOCK_BOOTTIME_ALARM:
	default:
		return fmt.Errorf("timerfd clock %d", o.Timer.Clock)
	}
	if o.Timer.SetFlags&^unix.TFD_TIMER_ABSTIME != 0 || o.Timer.Value < 0 || o.Timer.Interval < 0 {
		return errors.New("bad timer setting")
	}
	return nil
}

func decodeEpoll(r *reader, l *limits, o *Object) error {
	n := int(r.u32())
	if l.watches += n; n < 0 || l.watches > MaxWatches {
		return fmt.Errorf("more than %d epoll watches", MaxWatches)
	}
	for range n {
		w := Watch{FD: int(int32(r.u32())), Events: r.u32(), Data: r.u64()}
		if r.err != nil {
			return r.err
		}
		if w.FD < 0 || w.FD >= maxFDNum {
			return fmt.Errorf("watch of fd %d", w.FD)
		}
		o.Watches = append(o.Watches, w)
	}
	return nil
}

func decodePipe(r *reader, l *limits, o *Object) error {
	o.PipeSize = int(int32(r.u32()))
	n := int(r.u32())
	if err := checkBuffered(l, o.PipeSize, n, "pipe", "pipes"); err != nil {
		return err
	}
	if n > 0 {
		o.Data = append([]byte(nil), r.take(n)...)
	}
	return nil
}

func decodeSocketPair(r *reader, l *limits, o *Object) error {
	o.SockType = int(int32(r.u32()))
	switch o.SockType {
	case unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET:
	default:
		return fmt.Errorf("socket type %d", o.SockType)
	}
	if l.version >= 3 {
		o.Shutdown = [2]uint8{r.u8(), r.u8()}
		if o.Shutdown[0] > 3 || o.Shutdown[1] > 3 || (o.SockType != unix.SOCK_DGRAM && !mirrored(o.Shutdown)) {
			return fmt.Errorf("socket pair shutdown states %v", o.Shutdown)
		}
	}
	for end := range o.Queued {
		n, bytes := int(r.u32()), 0
		if n < 0 || n > MaxMessages || (o.SockType == unix.SOCK_STREAM && n > 1) {
			return fmt.Errorf("%d messages queued at end %d", n, end)
		}
		for range n {
			m := int(r.u32())
			if bytes += m; m < 0 || bytes > MaxQueued {
				return fmt.Errorf("more than %d bytes queued at end %d", MaxQueued, end)
			}
			msg := r.take(m)
			if r.err != nil {
				return r.err
			}
			o.Queued[end] = append(o.Queued[end], append([]byte{}, msg...))
		}
	}
	return nil
}

// checkBuffered checks a pipe's or FIFO's size and the n bytes it holds,
// counting them against the table's limit; what and all name the object
// and the kinds whose bytes count against the limit, in errors.
func checkBuffered(l *limits, size, n int, what, all string) error {
	if l.bytes += n; n < 0 || l.bytes > MaxData {
		return fmt.Errorf("%s hold more than %d bytes", all, MaxData)
	}
	if size < 4096 || size > 1<<30 || n > size {
		return fmt.Errorf("%s of %d bytes holding %d", what, size, n)
	}
	return nil
}

// decodeDescs reads o's nDesc descriptions: a file or FIFO has one or
// more, on end 0; a pipe or socket pair one per end, in end order; any
// other kind exactly one.
func decodeDescs(r *reader, l *limits, o *Object, nDesc int) error {
	if o.Kind == File || o.Kind == Fifo {
		if nDesc < 1 {
			return errors.New("a file without descriptions")
		}
	} else if want := 1 + btoi(o.Kind == Pipe || o.Kind == SocketPair); nDesc != want {
		return fmt.Errorf("%s with %d descriptions, want %d", o.Kind, nDesc, want)
	}
	for k := range nDesc {
		d, err := decodeDesc(r, l, o.Kind)
		if err != nil {
			return fmt.Errorf("description %d: %w", k, err)
		}
		if d.End != k*btoi(o.Kind == Pipe || o.Kind == SocketPair) {
			return fmt.Errorf("description %d is of end %d", k, d.End)
		}
		o.Descs = append(o.Descs, d)
	}
	return nil
}

func decodeDesc(r *reader, l *limits, kind Kind) (Desc, error) {
	d := Desc{End: int(r.u8()), Flags: r.u32()}
	allowed := uint32(StatusFlags)
	if kind == Fifo {
		allowed = fifoFlags
		if d.Flags&unix.O_ACCMODE == unix.O_ACCMODE {
			return d, fmt.Errorf("flags %#o", d.Flags)
		}
	}
	if kind == File {
		allowed = FileFlags
		d.Pos = int64(r.u64())
		if d.Pos < 0 || d.Pos > MaxFileSize || d.Flags&unix.O_ACCMODE == unix.O_ACCMODE {
			return d, fmt.Errorf("offset %d, flags %#o", d.Pos, d.Flags)
		}
	}
	nfd := int(r.u32())
	if d.Flags&^allowed != 0 {
		return d, fmt.Errorf("flags %#o", d.Flags)
	}
	if nfd < 1 || nfd > MaxFDs-len(l.seen) {
		return d, fmt.Errorf("on %d descriptors", nfd)
	}
	for range nfd {
		f := FD{Num: int(int32(r.u32()))}
		ce, err := flag(r.u8())
		if r.err != nil {
			return d, r.err
		}
		if err != nil || f.Num < 0 || f.Num >= maxFDNum || l.seen[f.Num] {
			return d, fmt.Errorf("descriptor %d out of range or given twice", f.Num)
		}
		f.CloseOnExec = ce
		l.seen[f.Num] = true
		d.FDs = append(d.FDs, f)
	}
	return d, nil
}

// flag decodes a 0/1 byte.
func flag(b uint8) (bool, error) {
	switch b {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return false, fmt.Errorf("flag byte %d", b)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func encodeFile(b []byte, f FileInfo) []byte {
	le := binary.LittleEndian
	b = append(b, byte(f.Kind), 0, 0, 0)
	b = le.AppendUint32(b, uint32(len(f.Name)))
	b = append(b, f.Name...)
	b = le.AppendUint32(b, f.Mode)
	b = le.AppendUint32(b, f.Uid)
	b = le.AppendUint32(b, f.Gid)
	b = le.AppendUint64(b, uint64(f.Size))
	for _, ts := range []unix.Timespec{f.Atime, f.Mtime} {
		b = le.AppendUint64(b, uint64(ts.Sec))
		b = le.AppendUint64(b, uint64(ts.Nsec))
	}
	b = le.AppendUint32(b, uint32(f.Seals))
	b = le.AppendUint32(b, uint32(len(f.Extents)))
	for _, e := range f.Extents {
		b = le.AppendUint64(b, uint64(e.Off))
		b = le.AppendUint32(b, uint32(len(e.Data)))
		b = append(b, e.Data...)
	}
	return b
}

// decodeFile reads a File's state and checks it: a memfd name or an
// absolute path without NUL or "..", permission bits only, seals only on
// a memfd, extents in order inside the size, the table's data bounds.
func decodeFile(r *reader, l *limits) (FileInfo, error) {
	f := FileInfo{Kind: FileKind(r.u8())}
	r.take(3)
	n := int(r.u32())
	if n < 1 || n > 4095 {
		return f, fmt.Errorf("file name of %d bytes", n)
	}
	f.Name = string(r.take(n))
	f.Mode, f.Uid, f.Gid = r.u32(), r.u32(), r.u32()
	f.Size = int64(r.u64())
	for _, ts := range []*unix.Timespec{&f.Atime, &f.Mtime} {
		ts.Sec, ts.Nsec = int64(r.u64()), int64(r.u64())
		if ts.Nsec < 0 || ts.Nsec >= 1e9 {
			return f, errors.New("bad file time")
		}
	}
	f.Seals = int(int32(r.u32()))
	ne := int(r.u32())
	if r.err != nil {
		return f, r.err
	}
	switch f.Kind {
	case Memfd:
		if len(f.Name) > maxMemfdName {
			return f, fmt.Errorf("memfd name of %d bytes", len(f.Name))
		}
	case Ghost:
		if f.Name[0] != '/' || strings.Contains("/"+f.Name+"/", "/../") || strings.HasSuffix(f.Name, "/") {
			return f, fmt.Errorf("ghost file path %q", f.Name)
		}
		if f.Seals != 0 {
			return f, errors.New("seals on a ghost file")
		}
	default:
		return f, fmt.Errorf("file kind %d", f.Kind)
	}
	if strings.IndexByte(f.Name, 0) >= 0 {
		return f, errors.New("NUL in a file name")
	}
	if f.Mode&^0o7777 != 0 || f.Seals&^memfdSeals != 0 || f.Size < 0 || f.Size > MaxFileSize {
		return f, fmt.Errorf("file mode %#o, seals %#x, size %d", f.Mode, f.Seals, f.Size)
	}
	if l.extents += ne; ne < 0 || l.extents > MaxExtents {
		return f, fmt.Errorf("more than %d file extents", MaxExtents)
	}
	end := int64(0)
	for range ne {
		e := Extent{Off: int64(r.u64())}
		m := int(r.u32())
		if l.fileBytes += m; m < 1 || l.fileBytes > MaxFileData {
			return f, fmt.Errorf("files hold more than %d bytes", MaxFileData)
		}
		if e.Off < end || e.Off+int64(m) > f.Size {
			return f, fmt.Errorf("extent [%d, +%d) out of order or past the size %d", e.Off, m, f.Size)
		}
		d := r.take(m)
		if r.err != nil {
			return f, r.err
		}
		e.Data = append([]byte(nil), d...)
		end = e.Off + int64(m)
		f.Extents = append(f.Extents, e)
	}
	return f, nil
}
