package sandbox

import (
	_ "embed"
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/procfs"
)

// UserNS is an open user namespace: the one a function's template runs
// in, whose root maps to the function's own unprivileged host range. Envs
// built for the template's forks are created inside it (EnvConfig.UserNS),
// so that every namespace of the template, its envs and its instances is
// owned by it, and what the template's capabilities allow is allowed
// there only. It stays alive while it is open, even after the template
// is gone.
type UserNS struct {
	f       *os.File
	uidBase int
}

// OpenUserNS opens the user namespace of the sandbox's process. The
// sandbox must have been started with Config.OwnUserNS.
func (s *Sandbox) OpenUserNS() (*UserNS, error) {
	if s.uidBase == 0 {
		return nil, fmt.Errorf("sandbox %s: not in a user namespace of its own", s.id)
	}
	u, err := OpenUserNS(s.pid, s.uidBase)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", s.id, err)
	}
	return u, nil
}

// OpenUserNS opens the user namespace of process pid (one we started in a
// user namespace of its own, whose root maps to host uid uidBase: a
// restorer, say).
func OpenUserNS(pid, uidBase int) (*UserNS, error) {
	f, err := procfs.OpenNamespace(pid, "user")
	if err != nil {
		return nil, fmt.Errorf("open user namespace: %w", err)
	}
	return &UserNS{f: f, uidBase: uidBase}, nil
}

// UIDBase is the host uid (and gid) that root of the namespace maps to.
func (u *UserNS) UIDBase() int { return u.uidBase }

// Close releases the namespace (it dies with the last process in it).
func (u *UserNS) Close() error { return u.f.Close() }

// nsenterELF is the program an env holder starts as (nsenter/nsenter.c):
// it joins a user namespace, becomes its root, unshares the env's other
// namespaces and execs the daemon binary by fd.
//
//go:embed nsenter_amd64.elf
var nsenterELF []byte

// nsenterProg is the nsenter program, sealed in a memfd, and an O_PATH fd
// of the daemon's own binary that it execs; made once per daemon.
var nsenterProg = sync.OnceValues(func() (prog struct {
	path string
	exe  *os.File
}, err error) {
	fd, err := unix.MemfdCreate("catalyzer-nsenter", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return prog, fmt.Errorf("nsenter: memfd: %w", err)
	}
	if _, err := unix.Write(fd, nsenterELF); err != nil {
		unix.Close(fd)
		return prog, fmt.Errorf("nsenter: memfd: %w", err)
	}
	// Sealed: nothing can change what every env holder runs first.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		unix.Close(fd)
		return prog, fmt.Errorf("nsenter: seal memfd: %w", err)
	}
	exe, err := unix.Open("/proc/self/exe", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		return prog, fmt.Errorf("nsenter: open own binary: %w", err)
	}
	prog.path = "/proc/self/fd/" + strconv.Itoa(fd)
	prog.exe = os.NewFile(uintptr(exe), "catalyzer-exe")
	return prog, nil
})
