package kobj

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// FileKind says what a File object is.
type FileKind uint8

const (
	// Memfd is a memfd_create(2) file (tmpfs, no name on any file system).
	Memfd FileKind = iota + 1
	// Ghost is a regular file whose last name was unlinked while the
	// process held it open.
	Ghost
)

// FileInfo is a file without a name and its contents: the state a
// checkpoint keeps of a File object.
type FileInfo struct {
	Kind FileKind
	// Name is a memfd's name (as memfd_create got it) or the path a
	// ghost file had, where the restore makes it again (O_EXCL) and
	// unlinks it once every description is open.
	Name string
	Mode uint32 // permission bits (07777)
	// Uid and Gid own a ghost file (fchown at restore, with the
	// process's own credentials).
	Uid, Gid uint32
	Size     int64
	// Atime and Mtime of a ghost file (utimensat at restore, last).
	Atime, Mtime unix.Timespec
	Seals        int // a memfd's seals (F_GET_SEALS)
	// Extents are its data, between holes (SEEK_DATA, SEEK_HOLE): a
	// hole is left a hole.
	Extents []Extent
}

// Extent is a run of a file's bytes at Off.
type Extent struct {
	Off  int64
	Data []byte
}

// FileFlags are the status flags a File description keeps: its access
// mode and what F_SETFL or open sets.
const FileFlags = unix.O_ACCMODE | unix.O_APPEND | unix.O_NONBLOCK | unix.O_DIRECT | unix.O_NOATIME | unix.O_LARGEFILE

// Limits on files.
const (
	MaxFileData  = 64 << 20                                                                                                       // bytes of data in all files of a table
	MaxFileSize  = 1 << 40                                                                                                        // a file's size, holes included
	MaxExtents   = 4096                                                                                                           // data runs in all files
	maxMemfdName = 249                                                                                                            // MFD_NAME_MAX_LEN
	memfdSeals   = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_FUTURE_WRITE | 0x20 // F_SEAL_EXEC
)

// FileRefusal is CaptureFiles' refusal of one descriptor: What names it,
// Why says what of it cannot be restored.
type FileRefusal = procfs.Object

// CaptureFiles reads the files without a name that the stopped process
// pid holds at fds (memfds, deleted regular files): one File object per
// file, with one description per open file description (kcmp) and each
// description's access mode, status flags and offset. Their contents are
// read through a description of their own (/proc/PID/fd/N reopened), so
// the process's offsets and atimes are left as they were. What cannot be
// restored exactly is a *SharedError naming the descriptor.
func CaptureFiles(pid int, fds []procfs.FD) ([]Object, error) {
	var objs []Object
	var refused []procfs.Object
	refuse := func(f procfs.FD, why string) {
		refused = append(refused, procfs.Object{What: fmt.Sprintf("fd %d (%s)", f.Num, f.Link), Why: why, FD: f.Num})
	}
	files := fileGroups{pid: pid}
	data, extents := 0, 0
	for _, f := range fds {
		st, err := procfs.StatFD(pid, f.Num)
		if err != nil {
			return nil, err
		}
		d := Desc{Flags: f.Info.Flags & FileFlags, Pos: f.Info.Pos, FDs: []FD{{Num: f.Num, CloseOnExec: f.Info.Flags&unix.O_CLOEXEC != 0}}}
		if len(f.Info.Locks) > 0 {
			refuse(f, "file locks and leases are not checkpointed (lock: "+f.Info.Locks[0]+")")
			continue
		}
		if known, err := files.add(objs, st, d); err != nil {
			return nil, err
		} else if known {
			continue
		}
		info, why, err := readFile(pid, f, st)
		if err != nil {
			return nil, fmt.Errorf("fd %d (%s): %w", f.Num, f.Link, err)
		}
		if why != "" {
			refuse(f, why)
			continue
		}
		for _, e := range info.Extents {
			data += len(e.Data)
		}
		extents += len(info.Extents)
		if data > MaxFileData || extents > MaxExtents {
			refuse(f, fmt.Sprintf("files without a name holding more than %d bytes in %d runs in all are not checkpointed", MaxFileData, MaxExtents))
			continue
		}
		files.made(st, len(objs), f.Num)
		objs = append(objs, Object{Kind: File, File: info, Descs: []Desc{d}})
	}
	if len(refused) > 0 {
		return nil, &SharedError{Pid: pid, Objects: refused}
	}
	return objs, nil
}

// fileGroups sorts a process's descriptors of files into objects: one
// per file (device and inode), one description per open file description
// (kcmp) of it.
type fileGroups struct {
	pid   int
	files []*fileGroup
}

type fileGroup struct {
	ino, dev uint64
	obj      int   // index in the objects
	first    []int // a descriptor of each of its descriptions
}

// add puts d, one descriptor's description, into the object of its file
// among objs if one was made (known): in the description it shares, or as
// a new one.
func (g *fileGroups) add(objs []Object, st unix.Stat_t, d Desc) (known bool, err error) {
	k := slices.IndexFunc(g.files, func(f *fileGroup) bool { return f.ino == st.Ino && f.dev == st.Dev })
	if k < 0 {
		return false, nil
	}
	fg, o, num := g.files[k], &objs[g.files[k].obj], d.FDs[0].Num
	for j, first := range fg.first {
		same, err := sameFile(g.pid, first, num)
		if err != nil {
			return true, err
		}
		if same {
			o.Descs[j].FDs = append(o.Descs[j].FDs, d.FDs[0])
			return true, nil
		}
	}
	o.Descs = append(o.Descs, d)
	fg.first = append(fg.first, num)
	return true, nil
}

// made records that the object at index obj was made for the file st,
// with its first description on descriptor num.
func (g *fileGroups) made(st unix.Stat_t, obj, num int) {
	g.files = append(g.files, &fileGroup{ino: st.Ino, dev: st.Dev, obj: obj, first: []int{num}})
}

// tmpfsMagic is TMPFS_MAGIC: where memfds live (hugetlbfs ones are not
// restored).
const tmpfsMagic = 0x01021994

// readFile reads one nameless file: why is set if it cannot be restored.
func readFile(pid int, f procfs.FD, st unix.Stat_t) (FileInfo, string, error) {
	info := FileInfo{Mode: st.Mode & 0o7777, Uid: st.Uid, Gid: st.Gid, Size: st.Size, Atime: st.Atim, Mtime: st.Mtim}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return info, fmt.Sprintf("a deleted file of type %#o is not checkpointed", st.Mode&unix.S_IFMT), nil
	case strings.HasPrefix(f.Link, "/memfd:"):
		info.Kind = Memfd
		info.Name = strings.TrimSuffix(strings.TrimPrefix(f.Link, "/memfd:"), " (deleted)")
		if len(info.Name) > maxMemfdName {
			return info, "memfd name too long", nil
		}
	case strings.HasSuffix(f.Link, " (deleted)"):
		info.Kind = Ghost
		info.Name = strings.TrimSuffix(f.Link, " (deleted)")
		if st.Nlink != 0 {
			return info, fmt.Sprintf("a deleted name of a file with %d other links is not checkpointed", st.Nlink), nil
		}
		dir := info.Name[:strings.LastIndex(info.Name, "/")+1]
		var dst unix.Stat_t
		if err := unix.Stat(dir, &dst); err != nil || dst.Dev != st.Dev {
			return info, "its directory is gone (the restore makes the file again there)", nil
		}
		if err := unix.Lstat(info.Name, &dst); err == nil {
			return info, "its name is taken by another file now (the restore makes the file again there)", nil
		}
	default:
		return info, "not a file without a name", nil
	}
	if st.Size > MaxFileSize {
		return info, fmt.Sprintf("a file of %d bytes", st.Size), nil
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/fd/%d", pid, f.Num), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if err != nil {
		return info, "", err
	}
	defer unix.Close(fd)
	if info.Kind == Memfd {
		var sfs unix.Statfs_t
		if err := unix.Fstatfs(fd, &sfs); err != nil {
			return info, "", err
		}
		if sfs.Type != tmpfsMagic {
			return info, fmt.Sprintf("a memfd on file system %#x (hugetlb) is not checkpointed", sfs.Type), nil
		}
		if info.Seals, err = unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0); err != nil {
			return info, "", fmt.Errorf("F_GET_SEALS: %w", err)
		}
	}
	info.Extents, err = readExtents(fd, st.Size)
	if err != nil {
		return info, "", err
	}
	total := 0
	for _, e := range info.Extents {
		total += len(e.Data)
	}
	if total > MaxFileData || len(info.Extents) > MaxExtents {
		return info, fmt.Sprintf("a file holding %d bytes of data in %d runs (at most %d in %d are checkpointed)", total, len(info.Extents), MaxFileData, MaxExtents), nil
	}
	return info, "", nil
}

// readExtents reads the data of fd between holes, up to size, stopping
// early (with more than the limits) once it holds more than
// MaxFileData bytes or MaxExtents runs.
func readExtents(fd int, size int64) ([]Extent, error) {
	var out []Extent
	total := 0
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // a hole to the end
		}
		if err != nil {
			return nil, fmt.Errorf("SEEK_DATA: %w", err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("SEEK_HOLE: %w", err)
		}
		end = min(end, size)
		if end <= start {
			break
		}
		if total+int(end-start) > MaxFileData || len(out) >= MaxExtents {
			out = append(out, Extent{Off: start, Data: make([]byte, end-start)})
			return out, nil
		}
		buf := make([]byte, end-start)
		n, err := unix.Pread(fd, buf, start)
		if err != nil {
			return nil, fmt.Errorf("pread: %w", err)
		}
		if n < len(buf) {
			return nil, fmt.Errorf("pread at %d: %w", start, io.ErrUnexpectedEOF)
		}
		out = append(out, Extent{Off: start, Data: buf})
		total += len(buf)
		off = end
	}
	return out, nil
}

// hasFiles reports whether t holds File objects.
func (t *Table) hasFiles() bool {
	for _, o := range t.Objects {
		if o.Kind == File {
			return true
		}
	}
	return false
}

// CreateFiles makes, in the stopped process pid (the copy, through exec:
// one batch), a new file for each File object of t: a memfd of its name,
// or a file at a ghost's path (O_CREAT|O_EXCL, mode 0600, with the
// process's own credentials, so that it never opens what is there), and
// writes its data and size into it from here through a duplicate of the
// descriptor (pidfd_getfd): file contents never go through a batch. It
// must run before the batch AddWithFiles builds, which gives each file its owner,
// mode, seals and times, opens its descriptions and unlinks a ghost's
// name. It also looks, from here, at the path of each unix socket the
// table binds to one in the process's root (staleSockets). A table
// without files or such sockets needs no call.
func (t *Table) CreateFiles(pid int, exec func(*ptrace.Batch) (*ptrace.Results, error)) (Files, error) {
	stale, err := t.staleSockets(pid)
	if err != nil || !t.hasFiles() {
		return stale, err
	}
	above := 0
	for _, n := range t.FDs() {
		above = max(above, n+1)
	}
	b := ptrace.NewBatch()
	var refs []ptrace.Ref
	var idx []int
	for i, o := range t.Objects {
		if o.Kind != File {
			continue
		}
		var fd ptrace.Arg
		if o.File.Kind == Memfd {
			fd = b.Add(unix.SYS_MEMFD_CREATE, b.String(o.File.Name), ptrace.Lit(unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)).Result()
		} else {
			fd = b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), b.String(o.File.Name),
				ptrace.Lit(unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW), ptrace.Lit(0o600)).Result()
		}
		refs = append(refs, b.Add(unix.SYS_FCNTL, fd, ptrace.Lit(unix.F_DUPFD_CLOEXEC), ptrace.Lit(int64(above))))
		b.Add(unix.SYS_CLOSE, fd)
		idx = append(idx, i)
	}
	res, err := exec(b)
	if err != nil {
		return nil, fmt.Errorf("create files: %w", err)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("create files: pidfd: %w", err)
	}
	defer unix.Close(pidfd)
	files := Files{}
	for i, v := range stale {
		files[i] = v
	}
	for k, i := range idx {
		n := int(res.Value(refs[k]))
		files[i] = n
		if err := fillFile(pidfd, n, t.Objects[i].File); err != nil {
			return nil, fmt.Errorf("create file %q: %w", t.Objects[i].File.Name, err)
		}
	}
	return files, nil
}

// Files are the descriptors CreateFiles made a table's files on in one
// copy, by index in Objects: for AddWithFiles. A Socket's entry, if any,
// is staleSocket.
type Files map[int]int

// staleSocket marks a Socket in Files whose path holds a socket file in
// the copy's root: its old socket's, left there (a socket file outlives
// its socket), unlinked before the bind.
const staleSocket = -2

// fillFile writes f's data and size into the copy's descriptor n.
func fillFile(pidfd, n int, f FileInfo) error {
	fd, err := unix.PidfdGetfd(pidfd, n, 0)
	if err != nil {
		return fmt.Errorf("pidfd_getfd: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != 0 {
		return errors.New("the created file is not a new regular file")
	}
	for _, e := range f.Extents {
		for off := 0; off < len(e.Data); {
			w, err := unix.Pwrite(fd, e.Data[off:], e.Off+int64(off))
			if err != nil {
				return fmt.Errorf("pwrite at %d: %w", e.Off+int64(off), err)
			}
			off += w
		}
	}
	if err := unix.Ftruncate(fd, f.Size); err != nil {
		return fmt.Errorf("ftruncate: %w", err)
	}
	return nil
}

// addFile is addObject for a File whose file CreateFiles made on fd:
// owner, mode, every description (a ghost's by its path, a memfd's first
// read-write one is fd's own, others through /proc/self/fd), the ghost's
// name unlinked, seals, times; then each description onto its numbers.
func addFile(b *ptrace.Batch, o Object, fd int, above int) {
	f := o.File
	file := ptrace.Lit(int64(fd))
	if f.Kind == Ghost {
		b.Add(unix.SYS_FCHOWN, file, ptrace.Lit(int64(f.Uid)), ptrace.Lit(int64(f.Gid)))
	}
	b.Add(unix.SYS_FCHMOD, file, ptrace.Lit(int64(f.Mode)))
	srcs := make([]ptrace.Arg, len(o.Descs))
	ownUsed := false
	for k, d := range o.Descs {
		flags := int64(d.Flags &^ unix.O_LARGEFILE)
		switch {
		case f.Kind == Memfd && !ownUsed && d.Flags&unix.O_ACCMODE == unix.O_RDWR:
			ownUsed = true
			srcs[k] = file
			if fl := flags &^ unix.O_ACCMODE; fl != 0 {
				b.Add(unix.SYS_FCNTL, file, ptrace.Lit(unix.F_SETFL), ptrace.Lit(fl))
			}
			continue
		case f.Kind == Memfd:
			srcs[k] = b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), b.String(fmt.Sprintf("/proc/self/fd/%d", fd)),
				ptrace.Lit(flags|unix.O_CLOEXEC)).Result()
		default:
			srcs[k] = b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), b.String(f.Name),
				ptrace.Lit(flags|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NOCTTY)).Result()
		}
		moved := b.Add(unix.SYS_FCNTL, srcs[k], ptrace.Lit(unix.F_DUPFD_CLOEXEC), ptrace.Lit(int64(above))).Result()
		b.Add(unix.SYS_CLOSE, srcs[k])
		srcs[k] = moved
	}
	if f.Kind == Ghost {
		b.Add(unix.SYS_UNLINKAT, ptrace.Lit(unix.AT_FDCWD), b.String(f.Name), ptrace.Lit(0))
	}
	if f.Kind == Memfd && f.Seals != 0 {
		b.Add(unix.SYS_FCNTL, file, ptrace.Lit(unix.F_ADD_SEALS), ptrace.Lit(int64(f.Seals)))
	}
	for k, d := range o.Descs {
		if d.Pos != 0 {
			b.Add(unix.SYS_LSEEK, srcs[k], ptrace.Lit(d.Pos), ptrace.Lit(unix.SEEK_SET))
		}
		putOn(b, srcs[k], d.FDs)
	}
	if f.Kind == Ghost {
		// Last: opening and chmod leave them, writes did not.
		ts := make([]byte, 32)
		le := binary.LittleEndian
		le.PutUint64(ts[0:], uint64(f.Atime.Sec))
		le.PutUint64(ts[8:], uint64(f.Atime.Nsec))
		le.PutUint64(ts[16:], uint64(f.Mtime.Sec))
		le.PutUint64(ts[24:], uint64(f.Mtime.Nsec))
		b.Add(unix.SYS_UTIMENSAT, file, ptrace.Lit(0), b.Bytes(ts), ptrace.Lit(0))
	}
	for k := range o.Descs {
		if srcs[k] != file {
			b.Add(unix.SYS_CLOSE, srcs[k])
		}
	}
	b.Add(unix.SYS_CLOSE, file)
}
