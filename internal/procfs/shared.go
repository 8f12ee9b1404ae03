package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/sys/unix"
)

// Object is a kernel object that forked copies of a process would share.
type Object struct {
	// What names the object as maps or the fd table shows it:
	// "fd 5 (pipe:[1234])", "mapping 7f12a000-7f12b000 rw-s /memfd:x (deleted)".
	What string
	// Why says what the copies would share through it.
	Why string
	// FD is the descriptor's number, -1 for a mapping.
	FD int
	// Start is a mapping's start address, 0 for a descriptor.
	Start uint64
}

// String is "What: Why".
func (o Object) String() string { return o.What + ": " + o.Why }

// SharedObjects lists every object that forked copies of pid would share
// with each other (see the package doc for what counts): shared mappings
// first, in address order, then descriptors in increasing order. The
// descriptors in allowFDs (the caller's own control channel) are not
// looked at. An empty list with a nil error means a fork of pid shares
// none of them. See the package doc for its errors.
func SharedObjects(pid int, allowFDs []int) ([]Object, error) {
	if err := checkPID(pid); err != nil {
		return nil, err
	}
	ms, err := maps(pid)
	if err != nil {
		return nil, err
	}
	fds, err := fdList(pid)
	if err != nil {
		return nil, err
	}
	var out []Object
	for _, m := range ms {
		if why := sharedMapping(m); why != "" {
			what := fmt.Sprintf("mapping %x-%x %s", m.Start, m.End, m.Perms)
			if m.Path != "" {
				what += " " + m.Path
			}
			out = append(out, Object{What: what, Why: why, FD: -1, Start: m.Start})
		}
	}
	allowed := map[int]bool{}
	for _, fd := range allowFDs {
		allowed[fd] = true
	}
	for _, f := range fds {
		if allowed[f.Num] {
			continue
		}
		why := sharedFD(f.Link)
		if why == "" && strings.HasPrefix(f.Link, "/") {
			var st unix.Stat_t
			err := unix.Stat(path(pid, fmt.Sprintf("fd/%d", f.Num)), &st)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				continue // closed meanwhile, or the process went: alive tells
			case err != nil:
				return nil, fmt.Errorf("procfs: stat /proc/%v/fd/%d: %w", procName(pid), f.Num, vanished(err))
			case st.Mode&unix.S_IFMT == unix.S_IFIFO:
				why = "a FIFO: every copy reads and writes the same one"
			}
		}
		if why != "" {
			out = append(out, Object{What: fmt.Sprintf("fd %d (%s)", f.Num, f.Link), Why: why, FD: f.Num})
		}
	}
	if err := alive(pid); err != nil {
		return nil, err
	}
	return out, nil
}

// kernelMappings are the special mappings the kernel makes itself; they
// hold nothing a process can write to reach another.
var kernelMappings = map[string]bool{
	"[vdso]": true, "[vvar]": true, "[vvar_vclock]": true, "[vsyscall]": true, "[uprobes]": true,
}

// sharedMapping says why copies would share m, or "" if they would not.
// Only a read-only shared mapping of a file (not shared memory) and the
// kernel's own special mappings are let through.
func sharedMapping(m Mapping) string {
	if !m.Perms.Shared || kernelMappings[m.Path] {
		return ""
	}
	var why string
	switch p := m.Path; {
	case strings.HasPrefix(p, "/dev/zero"), strings.HasPrefix(p, "[anon_shmem:"):
		why = "shared anonymous memory: every copy sees the same pages"
	case strings.HasPrefix(p, "/memfd:"):
		why = "a memfd mapped shared: every copy sees the same pages"
	case strings.HasPrefix(p, "/SYSV"):
		why = "System V shared memory: every copy sees the same pages"
	case strings.Contains(p, "/dev/shm/"): // a sandbox's /dev/shm seen from outside, too
		why = "POSIX shared memory: every copy sees the same pages"
	case strings.HasPrefix(p, "/"):
		if m.Perms.Write {
			return "a writable shared file mapping: every copy writes the same file"
		}
		return "" // a read-only shared mapping of a file
	case strings.HasPrefix(p, "anon_inode:"):
		return "a shared mapping of " + p + ": every copy sees the same kernel buffer"
	default: // "", or a name in brackets the kernel's own mappings do not have
		return "a shared mapping of unknown memory: every copy sees the same pages"
	}
	if !m.Perms.Write {
		why += "; mprotect can make it writable"
	}
	return why
}

// fineAnonInodes are anon inodes that carry nothing between the copies
// holding them.
var fineAnonInodes = map[string]bool{"[pidfd]": true}

// nsKinds are the namespace descriptors (nsfs, "net:[4026531840]"): they
// name a namespace, they carry no data.
var nsKinds = map[string]bool{
	"cgroup": true, "ipc": true, "mnt": true, "net": true, "pid": true, "pid_for_children": true,
	"time": true, "time_for_children": true, "user": true, "uts": true,
}

// sharedFD says why copies would share a descriptor with this link, or ""
// if they would not (paths other than memfds are left to the caller, to
// stat for FIFOs).
func sharedFD(link string) string {
	switch {
	case strings.HasPrefix(link, "/memfd:"):
		return "a memfd: every copy reads and writes the same memory"
	case strings.HasPrefix(link, "/"):
		return ""
	case strings.HasPrefix(link, "pipe:["):
		return "a pipe: every copy reads and writes the same one"
	case strings.HasPrefix(link, "socket:["):
		return "a socket: every copy sends and receives on the same one"
	case strings.HasPrefix(link, "anon_inode:"):
		kind := strings.TrimPrefix(link, "anon_inode:")
		if fineAnonInodes[kind] {
			return ""
		}
		return "an anon inode (" + kind + "): its state is shared by every copy"
	}
	if kind, rest, ok := strings.Cut(link, ":["); ok && nsKinds[kind] && strings.HasSuffix(rest, "]") {
		return ""
	}
	return "a kind of descriptor this check does not know: it may be shared by every copy"
}
