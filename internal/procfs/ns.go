package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// NSID identifies a namespace: the device and inode of /proc/PID/ns/NAME
// (two processes are in the same namespace when these are equal).
type NSID struct{ Dev, Ino uint64 }

// Namespace stats /proc/PID/ns/name ("mnt", "net", "pid", "user", ...).
// See the package doc for its errors.
func Namespace(pid int, name string) (NSID, error) {
	if err := checkPID(pid); err != nil {
		return NSID{}, err
	}
	var st unix.Stat_t
	if err := unix.Stat(path(pid, "ns/"+name), &st); err != nil {
		return NSID{}, fmt.Errorf("procfs: stat /proc/%v/ns/%s: %w", procName(pid), name, vanished(err))
	}
	return NSID{st.Dev, st.Ino}, alive(pid)
}

// OpenNamespace opens /proc/PID/ns/name, for setns(2) or an NS_GET_*
// ioctl; the caller closes it. The namespace stays open (and alive) after
// pid exits. See the package doc for its errors.
func OpenNamespace(pid int, name string) (*os.File, error) {
	if err := checkPID(pid); err != nil {
		return nil, err
	}
	f, err := os.Open(path(pid, "ns/"+name))
	if err != nil {
		return nil, vanished(err)
	}
	if err := alive(pid); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// NSLink reads the link /proc/PID/ns/name: "pid:[4026531836]". See the
// package doc for its errors.
func NSLink(pid int, name string) (string, error) {
	if err := checkPID(pid); err != nil {
		return "", err
	}
	l, err := os.Readlink(path(pid, "ns/"+name))
	if err != nil {
		return "", vanished(err)
	}
	return l, alive(pid)
}

// Link reads a link of /proc/PID: "cwd", "root", "exe". See the package
// doc for its errors.
func Link(pid int, name string) (string, error) {
	if err := checkPID(pid); err != nil {
		return "", err
	}
	l, err := os.Readlink(path(pid, name))
	if err != nil {
		return "", vanished(err)
	}
	return l, alive(pid)
}

// FDLinks maps each open descriptor of pid to its link (FD.Link),
// without reading fdinfo. A descriptor closed meanwhile is left out. See
// the package doc for its errors.
func FDLinks(pid int) (map[int]string, error) {
	if err := checkPID(pid); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(path(pid, "fd"))
	if err != nil {
		return nil, vanished(err)
	}
	out := make(map[int]string, len(ents))
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			return nil, fmt.Errorf("procfs: /proc/%v/fd/%s: %w", procName(pid), e.Name(), ErrFormat)
		}
		l, err := os.Readlink(path(pid, "fd/"+e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, vanished(err)
		}
		out[n] = l
	}
	return out, alive(pid)
}

// StatFD stats what descriptor fd of pid refers to (stat(2) through
// /proc/PID/fd/N). See the package doc for its errors; a descriptor that
// is not open is one wrapping fs.ErrNotExist too.
func StatFD(pid, fd int) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := checkPID(pid); err != nil {
		return st, err
	}
	if err := unix.Stat(path(pid, "fd/"+strconv.Itoa(fd)), &st); err != nil {
		return st, fmt.Errorf("procfs: stat /proc/%v/fd/%d: %w", procName(pid), fd, vanished(err))
	}
	return st, alive(pid)
}

// Personality reads /proc/PID/personality: the process's execution
// domain flags (personality(2)). See the package doc for its errors.
func Personality(pid int) (uint64, error) {
	return readLive(pid, "personality", func(b []byte) (uint64, error) {
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %w", b, ErrFormat)
		}
		return v, nil
	})
}

// Timers counts the POSIX timers (timer_create(2)) of pid: the "ID:"
// lines of /proc/PID/timers. See the package doc for its errors.
func Timers(pid int) (int, error) {
	return readLive(pid, "timers", func(b []byte) (int, error) {
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "ID:") {
				n++
			}
		}
		return n, nil
	})
}
