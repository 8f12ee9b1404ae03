package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/cleanup"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
	"github.com/catalyzer/catalyzer/internal/sandbox/initwire"
	"github.com/catalyzer/catalyzer/internal/sandbox/sandboxinit"
	"github.com/catalyzer/catalyzer/internal/timing"
)

// EnvNamespaces are the namespaces an Env holds; a joining process
// enters them with setns(Env.PidFD(), EnvNamespaces).
const EnvNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWNET | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP

// JoinTimeout bounds how long an adopted sandbox keeps the env's holder
// alive waiting for the adopted process to join (Adopt called before the
// join batch ran). Past it the holder is retired anyway.
var JoinTimeout = 10 * time.Second

// envState is where an Env is in its life, changed under Env.mu:
//
//	ready --Adopt--> adopted      (the Sandbox owns it from then on)
//	ready --Release--> released
type envState int

const (
	envReady envState = iota
	envAdopted
	envReleased
)

func (s envState) String() string {
	return [...]string{"ready", "adopted", "released"}[s]
}

// Env is a pre-built sandbox env: mount (overlay root, binds, /dev, /tmp,
// /sys, an empty /proc), network, UTS and IPC namespaces held by a small
// holder process, and a cgroup. A process joins it with setns on the
// holder's pidfd; Adopt then makes it a Sandbox. See doc.go, "Envs".
type Env struct {
	id     string
	cmd    *exec.Cmd
	pidfd  *os.File // holder's pidfd
	cg     *cgroup.Group
	dir    string
	phases []timing.Phase
	ns     map[string]procfs.NSID // holder's namespaces by /proc/pid/ns name
	ownNet bool                   // a network namespace of its own (not NetworkHost)

	mu         sync.Mutex
	state      envState
	retireOnce sync.Once
	retireErr  error
	retired    chan struct{} // closed once the holder is retired
}

var envNSNames = []string{"mnt", "net", "uts", "ipc", "cgroup"}

func readNS(pid int) (map[string]procfs.NSID, error) {
	out := make(map[string]procfs.NSID, len(envNSNames))
	for _, n := range envNSNames {
		id, err := procfs.Namespace(pid, n)
		if err != nil {
			return nil, err
		}
		out[n] = id
	}
	return out, nil
}

// NewEnv builds the env described by cfg now (a pool calls it off the
// critical path). It returns once the holder reported the env ready, or
// with the holder's error (an *InitError); whatever was half-built is
// undone on failure.
func NewEnv(cfg EnvConfig) (*Env, error) {
	clock := newPhaseClock()
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var c cleanup.Cleanup
	defer c.Clean()

	// The holder joins the cgroup before it reads its config, so that the
	// cgroup namespace it makes is rooted there; a joining process enters
	// that namespace (its view of /proc/self/cgroup is "/").
	dir, cg, err := newInstance("sandbox env", cfg.CgroupParent, cfg.ID, cfg.Limits, &c)
	if err != nil {
		return nil, err
	}
	clock.Now("cgroup")

	flags := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC)
	if cfg.Network != NetworkHost {
		flags |= syscall.CLONE_NEWNET
	}
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{"catalyzer-sandbox-env"},
		Env:         []string{initwire.ParentEnv + "=" + strconv.Itoa(os.Getpid())},
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL},
	}
	var after []*os.File
	if cfg.UserNS != nil {
		// Real root builds the root here, as Start does for OwnUserNS; the
		// holder binds its copy. The holder starts as nsenter, which
		// joins the user namespace and makes the env's namespaces there
		// (see doc.go, "Envs"); its fds follow the pipes (3, 4).
		if err := prepareRoot(dir, envLower(cfg), cfg.UpperBytes, cfg.UserNS.uidBase, cfg.Binds, &c); err != nil {
			return nil, fmt.Errorf("sandbox env %s: rootfs: %w", cfg.ID, err)
		}
		clock.Now("rootfs-host")
		prog, err := nsenterProg()
		if err != nil {
			return nil, fmt.Errorf("sandbox env %s: %w", cfg.ID, err)
		}
		cmd.Path = prog.path
		cmd.Args = []string{"catalyzer-nsenter", "5", "6", strconv.FormatUint(uint64(flags), 10), "catalyzer-sandbox-env"}
		after = []*os.File{cfg.UserNS.f, prog.exe}
		cmd.SysProcAttr.Cloneflags = 0
	}
	h, err := helperLaunch{what: "sandbox env", id: cfg.ID, cmd: cmd, after: after, cg: cg,
		config: holderWire(cfg, dir), sendMark: "send", markNow: clock.Now}.run(&c)
	if err != nil {
		return nil, err
	}
	// The holder closed its ends and becomes the pause binary.
	h.close()
	clock.Add(h.marks)
	pfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox env %s: pidfd_open: %w", cfg.ID, err)
	}
	pidfd := os.NewFile(uintptr(pfd), "pidfd")
	c.Add(func() { pidfd.Close() })
	ns, err := readNS(cmd.Process.Pid)
	if err != nil {
		return nil, fmt.Errorf("sandbox env %s: holder namespaces: %w", cfg.ID, err)
	}
	if cfg.UserNS != nil {
		// The holder has its own copy now; drop the daemon's.
		sandboxinit.UnmountOverlay(dir)
	}
	clock.Now("ready")

	e := &Env{id: cfg.ID, cmd: cmd, pidfd: pidfd, cg: cg, dir: dir, ns: ns, ownNet: cfg.Network != NetworkHost,
		retired: make(chan struct{})}
	e.phases = clock.Phases()
	c.Release()
	return e, nil
}

// holderWire is the config of an Env's holder.
func holderWire(cfg EnvConfig, dir string) initwire.Config {
	w := envWire(cfg, dir)
	w.Prepared, w.Hold = cfg.UserNS != nil, true
	return w
}

// ID is the env's id (its cgroup's and run dir's name, and the adopted
// sandbox's ID).
func (e *Env) ID() string { return e.id }

// PidFD is a pidfd of the holder, to pass to a template over SCM_RIGHTS:
// setns(fd, EnvNamespaces) joins the env. It is closed by Release, by
// Destroy of the adopted sandbox, or once the adopted process has joined.
func (e *Env) PidFD() *os.File { return e.pidfd }

// CgroupDir opens the env's cgroup v2 directory, for a process to be
// born in it (clone3 CLONE_INTO_CGROUP): everything its creation charges
// (page tables, kernel stack) is then the env's, not its parent's. It is
// nil on cgroup v1 (and hybrid) hosts, which have no such clone. The
// caller closes it.
func (e *Env) CgroupDir() (*os.File, error) {
	dir, ok := e.cg.Dirs()["unified"]
	if !ok {
		return nil, nil
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox env %s: open cgroup: %w", e.id, err)
	}
	return os.NewFile(uintptr(fd), "cgroup"), nil
}

// JoinFlags are the namespaces a joiner enters by setns(PidFD(), flags):
// EnvNamespaces, less the network for NetworkHost (the holder is in the
// host's, which a joiner in a user namespace may not enter, and is
// already in).
func (e *Env) JoinFlags() int {
	if e.ownNet {
		return EnvNamespaces
	}
	return EnvNamespaces &^ unix.CLONE_NEWNET
}

// NamespacePaths are the /proc paths of the namespaces the env made
// (cgroup, UTS, IPC, network unless NetworkHost, mount), for a process that
// cannot be handed the holder's pidfd (it was started before the env):
// it opens each and calls setns(fd, 0) while the holder lives (Adopt
// retires it once the process has joined).
func (e *Env) NamespacePaths() []string {
	names := []string{"cgroup", "uts", "ipc"}
	if e.ownNet {
		names = append(names, "net")
	}
	names = append(names, "mnt") // last: it changes the root the others are opened from
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = fmt.Sprintf("/proc/%d/ns/%s", e.cmd.Process.Pid, n)
	}
	return out
}

// Phases returns the measured phases of NewEnv, in order: "cgroup"
// (validate, run dir, cgroup), "spawn" (clone+exec of the holder, pidfd),
// "send" (config sent), "config" (the holder's Go runtime started and read
// it), "rootfs" (overlay, binds, /dev, /tmp, /sys, pivot_root, masks),
// "net" (hostname, lo up), "ready" (until the daemon saw the ready report).
func (e *Env) Phases() []timing.Phase { return append([]timing.Phase(nil), e.phases...) }

// Adopt makes pid (a host pid) the env's instance: it adds pid to the
// env's cgroup and returns a Sandbox for it, whose ID is the env's. The
// process is not our child (its parent is the template): Wait reads its
// exit status through a pidfd. Once pid has joined the env (its mount,
// network, UTS and IPC namespaces are the holder's) the holder is
// retired: killed and reaped, the joined process keeps the namespaces
// alive. If pid has not joined yet, a goroutine retires the holder when
// it has (or when it exits, or after JoinTimeout). An env is adopted at
// most once (errdefs.ErrConflict); a pid that is gone is
// errdefs.ErrNotFound, and the env stays usable.
func (e *Env) Adopt(pid int) (*Sandbox, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != envReady {
		return nil, fmt.Errorf("sandbox env %s: already %s: %w", e.id, e.state, errdefs.ErrConflict)
	}
	if pid <= 0 {
		return nil, fmt.Errorf("sandbox env %s: adopt pid %d: %w", e.id, pid, errdefs.ErrInvalid)
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			err = fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("sandbox env %s: adopt pid %d: %w", e.id, pid, err)
	}
	// Non-blocking: the runtime's poller tells us when it exits.
	pidfd := os.NewFile(uintptr(fd), "pidfd")
	if err := e.cg.Add(pid); err != nil {
		pidfd.Close()
		return nil, fmt.Errorf("sandbox env %s: adopt pid %d: %w", e.id, pid, err)
	}
	e.state = envAdopted
	s := &Sandbox{id: e.id, pid: pid, pidfd: pidfd, env: e, cg: e.cg, dir: e.dir,
		phases: e.phases, done: make(chan struct{})}
	go s.watch()
	if e.joined(pid) {
		// Killing and reaping the holder takes about a millisecond; the
		// joined process needs none of it, so it is not waited for.
		go e.retire()
	} else {
		go func() {
			deadline := time.Now().Add(JoinTimeout)
			delay := 100 * time.Microsecond
			for !e.joined(pid) && time.Now().Before(deadline) {
				select {
				case <-s.done:
					_ = e.retire()
					return
				case <-time.After(delay):
				}
				delay = min(2*delay, 20*time.Millisecond)
			}
			_ = e.retire()
		}()
	}
	return s, nil
}

// joined reports whether pid is in every namespace of the holder.
func (e *Env) joined(pid int) bool {
	ns, err := readNS(pid)
	if err != nil {
		return false
	}
	for n, id := range e.ns {
		if ns[n] != id {
			return false
		}
	}
	return true
}

// retire kills and reaps the holder and closes its pidfd. It is
// idempotent.
func (e *Env) retire() error {
	e.retireOnce.Do(func() {
		_ = unix.PidfdSendSignal(int(e.pidfd.Fd()), unix.SIGKILL, nil, 0)
		err := e.cmd.Wait()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			e.retireErr = fmt.Errorf("sandbox env %s: reap holder: %w", e.id, err)
		}
		e.pidfd.Close()
		close(e.retired)
	})
	return e.retireErr
}

// Release destroys an env that was never adopted: it kills the holder,
// deletes the cgroup and the run dir. It is idempotent, and does nothing
// once the env was adopted (the Sandbox owns it then).
func (e *Env) Release() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != envReady {
		return nil
	}
	e.state = envReleased
	errs := []error{e.retire()}
	if err := e.cg.Delete(); err != nil {
		errs = append(errs, fmt.Errorf("cgroup delete: %w", err))
	}
	if err := os.Remove(e.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sandbox env %s: release: %w", e.id, err)
	}
	return nil
}

// kill sends SIGKILL to the sandboxed process.
func (s *Sandbox) kill() {
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		return
	}
	if rc, err := s.pidfd.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _ = unix.PidfdSendSignal(int(fd), unix.SIGKILL, nil, 0) })
	}
}

// watch waits for an adopted process to exit (its pidfd turns readable:
// the process is a zombie or reaped), records its exit and closes done.
func (s *Sandbox) watch() {
	defer close(s.done)
	rc, err := s.pidfd.SyscallConn()
	if err == nil {
		err = rc.Read(func(fd uintptr) bool {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, perr := unix.Poll(fds, 0)
			return perr == nil && n > 0
		})
	}
	if err != nil {
		s.exit.Code = -1
		s.werr = fmt.Errorf("sandbox %s: wait for pid %d: %w", s.id, s.pid, err)
		return
	}
	var ws syscall.WaitStatus
	_ = rc.Control(func(fd uintptr) { ws, err = exitStatus(int(fd), s.pid) })
	if err != nil {
		s.exit.Code = -1
		s.werr = fmt.Errorf("sandbox %s: pid %d exited, status unknown: %w", s.id, s.pid, err)
		return
	}
	s.setExit(ws)
}

// exitStatus returns the wait status of the exited process behind pidfd
// (pid in our PID namespace). Reaped: PIDFD_GET_INFO with PIDFD_INFO_EXIT
// (kernel 6.15+). Still a zombie (its parent, the template, has not
// reaped it): the exit_code field of /proc/pid/stat, checked to be our
// process by signalling the pidfd (a reaped process is ESRCH).
func exitStatus(pidfd, pid int) (syscall.WaitStatus, error) {
	var unsupported error
	for range 3 {
		info := unix.PidfdInfo{Mask: unix.PIDFD_INFO_EXIT}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(pidfd), unix.PIDFD_GET_INFO, uintptr(unsafe.Pointer(&info)))
		switch {
		case errno == 0 && info.Mask&unix.PIDFD_INFO_EXIT != 0:
			return syscall.WaitStatus(info.Exit_code), nil
		case errno != 0 && errno != unix.ESRCH:
			unsupported = fmt.Errorf("PIDFD_GET_INFO: %w (kernel 6.15+ needed): %w", errno, errdefs.ErrNotSupported)
		}
		if ws, ok := zombieStatus(pid); ok && unix.PidfdSendSignal(pidfd, 0, nil, 0) == nil {
			return ws, nil
		}
		if unsupported != nil {
			break
		}
		// Reaped between the two looks: PIDFD_INFO_EXIT has it now.
	}
	if unsupported == nil {
		unsupported = fmt.Errorf("no exit information: %w", errdefs.ErrNotSupported)
	}
	return 0, unsupported
}

// zombieStatus reads the exit status of pid from /proc/pid/stat (field
// 52, exit_code) if pid is a zombie.
func zombieStatus(pid int) (syscall.WaitStatus, bool) {
	st, err := procfs.Stat(pid)
	if err != nil || st.State != 'Z' {
		return 0, false
	}
	code, err := st.Int(52)
	if err != nil || int64(int32(code)) != code {
		return 0, false
	}
	return syscall.WaitStatus(code), true
}
