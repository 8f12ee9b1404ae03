package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// FD is one open file descriptor of a process.
type FD struct {
	Num int
	// Link is the target of /proc/PID/fd/Num: a path ("/etc/hosts",
	// "/memfd:NAME (deleted)"), or "pipe:[INODE]", "socket:[INODE]",
	// "anon_inode:[eventfd]", "net:[INODE]", ...
	Link string
	Info FDInfo // from /proc/PID/fdinfo/Num
	// Object is the kind-specific part of the same fdinfo, for the
	// anon-inode objects a fork must copy (eventfd, timerfd, signalfd,
	// epoll); zero for other files.
	Object ObjectInfo
}

// FDInfo is the common part of /proc/PID/fdinfo/N. The lines that follow
// it depend on the kind of file (eventfd-count, tfd, inotify, ...) and
// are not parsed.
type FDInfo struct {
	Pos   int64  // "pos:" file offset
	Flags uint32 // "flags:" in octal: the open flags, O_CLOEXEC included
	MntID int    // "mnt_id:", 0 if absent
	Ino   uint64 // "ino:" (Linux 5.14+), 0 if absent
	// Locks are the "lock:" lines: the file locks and leases held
	// through this descriptor ("1: FLOCK  ADVISORY  WRITE 1234 ...").
	Locks []string
}

// FDs lists the open descriptors of pid in increasing order, each with its
// link and fdinfo. A descriptor closed while the list is being read is
// left out. See the package doc for its errors.
func FDs(pid int) ([]FD, error) {
	if err := checkPID(pid); err != nil {
		return nil, err
	}
	fds, err := fdList(pid)
	if err != nil {
		return nil, err
	}
	return fds, alive(pid)
}

func fdList(pid int) ([]FD, error) {
	ents, err := os.ReadDir(path(pid, "fd"))
	if err != nil {
		return nil, vanished(err)
	}
	var out []FD
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			return nil, fmt.Errorf("procfs: /proc/%v/fd/%s: %w", procName(pid), e.Name(), ErrFormat)
		}
		f := FD{Num: n}
		f.Link, err = os.Readlink(path(pid, "fd/"+e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // closed meanwhile, or the process went: alive tells
		}
		if err != nil {
			return nil, vanished(err)
		}
		b, err := readFile(pid, "fdinfo/"+e.Name())
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if f.Info, err = ParseFDInfo(b); err == nil {
			f.Object, err = ParseObjectInfo(b)
		}
		if err != nil {
			return nil, fmt.Errorf("procfs: /proc/%v/fdinfo/%d: %w", procName(pid), n, err)
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b FD) int { return a.Num - b.Num })
	return out, nil
}

// ParseFDInfo parses the text of /proc/PID/fdinfo/N. "pos:" and "flags:"
// must be there, once each; other lines are ignored. Text without that
// form is an error wrapping ErrFormat.
func ParseFDInfo(b []byte) (FDInfo, error) {
	var fi FDInfo
	seen := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		var err error
		switch k {
		case "pos":
			fi.Pos, err = strconv.ParseInt(v, 10, 64)
		case "flags":
			var f uint64
			f, err = strconv.ParseUint(v, 8, 32)
			fi.Flags = uint32(f)
		case "mnt_id":
			fi.MntID, err = strconv.Atoi(v)
		case "ino":
			fi.Ino, err = strconv.ParseUint(v, 10, 64)
		case "lock":
			fi.Locks = append(fi.Locks, v)
			continue
		default:
			continue
		}
		if err != nil || seen[k] {
			return FDInfo{}, fmt.Errorf("fdinfo %q: %w", line, ErrFormat)
		}
		seen[k] = true
	}
	if !seen["pos"] || !seen["flags"] {
		return FDInfo{}, fmt.Errorf("fdinfo without pos and flags: %w", ErrFormat)
	}
	return fi, nil
}
