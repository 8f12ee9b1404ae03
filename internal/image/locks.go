package image

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// File locks and leases a checkpoint keeps: flock(2) locks, OFD and POSIX
// record locks (fcntl), and leases, each as its fdinfo "lock:" line shows
// it. The plan takes each again (non-blocking: a conflicting lock taken
// by another process since is a restore error, never a lock silently
// lost) once every descriptor is open, while it still runs as root:
//
//	FLOCK   flock(fd, LOCK_SH|LOCK_EX | LOCK_NB)         on its description
//	OFDLCK  fcntl(fd, F_OFD_SETLK, {type, SEEK_SET, start, len})
//	POSIX   fcntl(fd, F_SETLK, ...) through one fd of the file that may take it
//	LEASE   fcntl(fd, F_SETLEASE, F_RDLCK|F_WRLCK)       last
//
// Refused by name: mandatory locks, leases being broken, delegations, a
// lock a waiter is blocked on, a description-owned lock (flock, OFD,
// lease) on a description shared by two descriptors (the plan opens each
// descriptor as a description of its own), a POSIX lock of another
// process.

// parseLocks checks what fd's lock lines hold.
func parseLocks(what string, pid int, lines []string) ([]procfs.Lock, error) {
	var out []procfs.Lock
	for _, line := range lines {
		l, err := procfs.ParseLock(line)
		if err != nil {
			return nil, &UnsupportedError{pid, what, fmt.Sprintf("a lock line not understood (%q)", line)}
		}
		refuse := func(why string) error {
			return &UnsupportedError{pid, what, fmt.Sprintf("%s (lock: %s)", why, line)}
		}
		switch {
		case l.Type != "READ" && l.Type != "WRITE":
			return nil, refuse("a lock of type " + l.Type + " is not checkpointed")
		case l.Class == "LEASE":
			if l.Mode != "ACTIVE" {
				return nil, refuse("a lease being broken is not checkpointed")
			}
		case l.Class == "FLOCK" || l.Class == "POSIX" || l.Class == "OFDLCK":
			if l.Mode != "ADVISORY" {
				return nil, refuse("mandatory locks are not checkpointed")
			}
			if l.Class == "POSIX" && l.Pid != pid {
				return nil, refuse(fmt.Sprintf("a POSIX lock of process %d", l.Pid))
			}
		default:
			return nil, refuse(l.Class + " locks are not checkpointed")
		}
		out = append(out, l)
	}
	return out, nil
}

// placeLocks refuses description-owned locks on shared descriptions and
// keeps each POSIX lock (the process's: fdinfo shows it on every fd of the
// file) on the first fd that can take it again.
func (s *state) placeLocks() error {
	type posix struct {
		dev        string
		ino        uint64
		start, end int64
		typ        string
	}
	placed := map[posix]bool{}
	for i := range s.fds {
		f := &s.fds[i]
		if len(f.locks) == 0 {
			continue
		}
		what := fmt.Sprintf("fd %d (%s)", f.fd, f.link)
		var kept []procfs.Lock
		for _, l := range f.locks {
			if l.Class != "POSIX" {
				for _, g := range s.fds {
					if g.fd != f.fd && g.kind == FDFile && g.link == f.link {
						if same, err := sameDescription(s.pid, f.fd, g.fd); err != nil {
							return fmt.Errorf("checkpoint %d: %w", s.pid, err)
						} else if same {
							return &UnsupportedError{s.pid, what, fmt.Sprintf("a %s lock on a description fd %d shares is not checkpointed", l.Class, g.fd)}
						}
					}
				}
				kept = append(kept, l)
				continue
			}
			k := posix{l.Dev, l.Ino, l.Start, l.End, l.Type}
			acc := f.info.Flags & unix.O_ACCMODE
			fits := acc == unix.O_RDWR || (l.Type == "READ" && acc == unix.O_RDONLY) || (l.Type == "WRITE" && acc == unix.O_WRONLY)
			if placed[k] || !fits {
				continue
			}
			placed[k] = true
			kept = append(kept, l)
		}
		f.locks = kept
	}
	for _, f := range s.fds {
		for _, l := range f.info.Locks {
			pl, _ := procfs.ParseLock(l)
			if pl.Class == "POSIX" && !placed[posix{pl.Dev, pl.Ino, pl.Start, pl.End, pl.Type}] {
				return &UnsupportedError{s.pid, fmt.Sprintf("fd %d (%s)", f.fd, f.link), "a POSIX lock no descriptor of the process could take again (its access mode)"}
			}
		}
	}
	return nil
}

// sameDescription reports whether fds a and b of pid share one open file
// description (kcmp KCMP_FILE).
func sameDescription(pid, a, b int) (bool, error) {
	r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(pid), 0, uintptr(a), uintptr(b), 0)
	if e != 0 {
		return false, fmt.Errorf("kcmp fds %d and %d: %w", a, b, e)
	}
	return r == 0, nil
}

// lockType is F_RDLCK or F_WRLCK.
func lockType(l procfs.Lock) int64 {
	if l.Type == "WRITE" {
		return unix.F_WRLCK
	}
	return unix.F_RDLCK
}

// addLocks (step 5a, after the descriptors) takes every lock again,
// leases last.
func (p *planner) addLocks() {
	for _, leases := range []bool{false, true} {
		for _, f := range p.s.fds {
			for _, l := range f.locks {
				if (l.Class == "LEASE") != leases {
					continue
				}
				fd := ptrace.Lit(int64(f.fd))
				switch l.Class {
				case "FLOCK":
					op := int64(unix.LOCK_SH)
					if l.Type == "WRITE" {
						op = unix.LOCK_EX
					}
					p.b.Add(unix.SYS_FLOCK, fd, ptrace.Lit(op|unix.LOCK_NB))
				case "LEASE":
					p.b.Add(unix.SYS_FCNTL, fd, ptrace.Lit(unix.F_SETLEASE), ptrace.Lit(lockType(l)))
				default:
					cmd := int64(unix.F_SETLK)
					if l.Class == "OFDLCK" {
						cmd = unix.F_OFD_SETLK
					}
					length := int64(0) // to the end of the file
					if l.End >= 0 {
						length = l.End - l.Start + 1
					}
					fl := ptrace.Flock(int16(lockType(l)), unix.SEEK_SET, l.Start, length)
					p.b.Add(unix.SYS_FCNTL, fd, ptrace.Lit(cmd), p.b.Bytes(fl))
				}
			}
		}
	}
}
