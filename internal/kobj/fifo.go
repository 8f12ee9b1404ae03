package kobj

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// FIFOs (named pipes) are reopened by their path, never re-created: the
// name is the file system's. A checkpoint keeps each FIFO's path, its
// capacity and the bytes queued in it (read through a reader of its own,
// /proc/PID/fd/N reopened, with tee(2): the process keeps them), and each
// open file description with its access mode and status flags.

// CaptureFIFOs reads the FIFOs the stopped process pid holds at fds (each
// an fd of a named pipe whose path still names it: the caller checks):
// one Fifo object per FIFO, one description per open file description
// (kcmp). data is what the table's pipes hold already, counted against
// MaxData. A FIFO that cannot be restored is a *SharedError naming it.
func CaptureFIFOs(pid int, fds []procfs.FD, data int) ([]Object, error) {
	var objs []Object
	var refused []procfs.Object
	fifos := fileGroups{pid: pid}
	for _, f := range fds {
		st, err := procfs.StatFD(pid, f.Num)
		if err != nil {
			return nil, err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFIFO {
			return nil, fmt.Errorf("fd %d (%s) is not a FIFO", f.Num, f.Link)
		}
		d := Desc{Flags: f.Info.Flags & fifoFlags, FDs: []FD{{Num: f.Num, CloseOnExec: f.Info.Flags&unix.O_CLOEXEC != 0}}}
		if known, err := fifos.add(objs, st, d); err != nil {
			return nil, err
		} else if known {
			continue
		}
		r, err := unix.Open(fmt.Sprintf("/proc/%d/fd/%d", pid, f.Num), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("fd %d (%s): reopen: %w", f.Num, f.Link, err)
		}
		size, bytes, err := peekPipeFD(r)
		unix.Close(r)
		if err != nil {
			return nil, fmt.Errorf("fd %d (%s): %w", f.Num, f.Link, err)
		}
		if data += len(bytes); data > MaxData {
			refused = append(refused, procfs.Object{What: fmt.Sprintf("fd %d (%s)", f.Num, f.Link), FD: f.Num,
				Why: fmt.Sprintf("pipes and FIFOs holding more than %d bytes in all are not re-created", MaxData)})
			continue
		}
		fifos.made(st, len(objs), f.Num)
		objs = append(objs, Object{Kind: Fifo, Path: f.Link, PipeSize: size, Data: bytes, Descs: []Desc{d}})
	}
	if len(refused) > 0 {
		return nil, &SharedError{Pid: pid, Objects: refused}
	}
	return objs, nil
}

// fifoFlags are the flags a FIFO description keeps: its access mode and
// its status flags.
const fifoFlags = unix.O_ACCMODE | StatusFlags

// addFifo is addObject for a FIFO: a helper description that reads and
// writes it (so that no open of it blocks), which must be a pipe
// (F_GETPIPE_SZ fails on anything else and stops the batch), its
// capacity and queued bytes, then each description opened by the path
// with its access mode (non-blocking, then given its own status flags)
// and put on its numbers.
func addFifo(b *ptrace.Batch, o Object, above int) {
	path := b.String(o.Path)
	opened := b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), path,
		ptrace.Lit(unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NOCTTY)).Result()
	// Above the table's numbers, as every object (see addObject): it
	// may have been opened on a number a description goes on.
	helper := b.Add(unix.SYS_FCNTL, opened, ptrace.Lit(unix.F_DUPFD_CLOEXEC), ptrace.Lit(int64(above))).Result()
	b.Add(unix.SYS_CLOSE, opened)
	b.Add(unix.SYS_FCNTL, helper, ptrace.Lit(unix.F_GETPIPE_SZ))
	if o.PipeSize > 0 && o.PipeSize != 65536 {
		b.Add(unix.SYS_FCNTL, helper, ptrace.Lit(unix.F_SETPIPE_SZ), ptrace.Lit(int64(o.PipeSize)))
	}
	if len(o.Data) > 0 {
		b.Add(unix.SYS_WRITE, helper, b.Bytes(o.Data), ptrace.Lit(int64(len(o.Data))))
	}
	for _, d := range o.Descs {
		fd := b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), path,
			ptrace.Lit(int64(d.Flags&unix.O_ACCMODE)|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NOCTTY)).Result()
		moved := b.Add(unix.SYS_FCNTL, fd, ptrace.Lit(unix.F_DUPFD_CLOEXEC), ptrace.Lit(int64(above))).Result()
		b.Add(unix.SYS_CLOSE, fd)
		if fl := int64(d.Flags & StatusFlags); fl != unix.O_NONBLOCK {
			b.Add(unix.SYS_FCNTL, moved, ptrace.Lit(unix.F_SETFL), ptrace.Lit(fl))
		}
		putOn(b, moved, d.FDs)
		b.Add(unix.SYS_CLOSE, moved)
	}
	b.Add(unix.SYS_CLOSE, helper)
}

// checkPath checks a path the restore opens: absolute, without NUL, ".."
// or a trailing slash, and not under /proc.
func checkPath(p string) error {
	if len(p) < 2 || len(p) > 4095 || p[0] != '/' || strings.Contains("/"+p+"/", "/../") || strings.HasSuffix(p, "/") ||
		strings.IndexByte(p, 0) >= 0 || strings.HasPrefix(p, "/proc/") {
		return fmt.Errorf("path %q", p)
	}
	return nil
}

// decodeFifo reads a Fifo's state: its path, capacity and queued bytes.
func decodeFifo(r *reader, l *limits, o *Object) error {
	n := int(r.u32())
	if n < 2 || n > 4095 {
		return fmt.Errorf("FIFO path of %d bytes", n)
	}
	o.Path = string(r.take(n))
	o.PipeSize = int(int32(r.u32()))
	m := int(r.u32())
	if r.err != nil {
		return r.err
	}
	if err := checkPath(o.Path); err != nil {
		return fmt.Errorf("FIFO %w", err)
	}
	if err := checkBuffered(l, o.PipeSize, m, "FIFO", "pipes and FIFOs"); err != nil {
		return err
	}
	if m > 0 {
		o.Data = append([]byte(nil), r.take(m)...)
	}
	if r.err != nil {
		return errors.New("FIFO data: " + r.err.Error())
	}
	return nil
}
