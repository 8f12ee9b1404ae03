package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/cleanup"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
	"github.com/catalyzer/catalyzer/internal/sandbox/initwire"
	"github.com/catalyzer/catalyzer/internal/sandbox/sandboxinit"
	"github.com/catalyzer/catalyzer/internal/timing"
)

// Exit is how the sandboxed process ended.
type Exit struct {
	Code      int            // exit status; -1 when killed by a signal
	Signal    syscall.Signal // the killing signal, 0 when it exited
	OOMKilled bool           // killed by the kernel's OOM killer in the sandbox's memory cgroup
}

// InitError is a setup step of the init helper that failed inside the
// sandbox (Step is e.g. "rootfs", "exec"). It unwraps to the errno, so
// errors.Is(err, fs.ErrNotExist) works for a missing argv[0].
type InitError = initwire.InitError

// Sandbox is one running sandboxed process and the resources around it:
// one started by Start (our child), or one adopted into an Env (not our
// child: watched through a pidfd).
type Sandbox struct {
	id    string
	pid   int
	cmd   *exec.Cmd // Start; nil when adopted
	pidfd *os.File  // adopted: a pollable pidfd of the process
	env   *Env      // adopted: the env whose holder must be retired
	cg    *cgroup.Group
	dir   string
	upper string // Template: host path of the upper layer
	// uidBase is the host uid root maps to, for a sandbox started in a
	// user namespace of its own; 0 otherwise.
	uidBase int
	phases  []timing.Phase

	done chan struct{}
	exit Exit
	werr error

	destroyOnce sync.Once
	destroyErr  error
}

func instanceDir(parent, id string) string { return filepath.Join(RunDir, parent, id) }

// Start builds the sandbox described by cfg and starts cfg.Argv in it:
// Prestart, then Exec. It returns once the program has been exec'd, or
// with the init helper's error; whatever was half-built is undone on
// failure. The steps are those of doc.go, "Setup order".
func Start(cfg Config) (*Sandbox, error) {
	proc, err := cfg.Process.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.Process = Process{}
	p, err := Prestart(cfg)
	if err != nil {
		return nil, err
	}
	s, err := p.Exec(proc)
	if err != nil {
		return nil, err
	}
	s.phases = append(p.Phases(), s.phases...)
	return s, nil
}

// initCmd is the init helper's command for cfg: this binary re-executed
// in new PID, mount, UTS and IPC namespaces (and network, user), killed
// with the daemon's thread.
func initCmd(cfg Config) *exec.Cmd {
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: []string{"catalyzer-sandbox-init"},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	if cfg.Network != NetworkHost {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNET
	}
	if cfg.OwnUserNS {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: cfg.UIDBase, Size: UIDMapSize}}
		cmd.SysProcAttr.UidMappings = m
		cmd.SysProcAttr.GidMappings = m
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
		// Become root of the new namespace (host uid 0 is unmapped there).
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	return cmd
}

// watchExit starts watching for the process's exit. A template is frozen
// under ptrace by its owner, and a wait4 from any other thread of this
// process would steal the tracer's stops: its exit is watched through a
// pidfd, and the reaping left to the tracer (or to Destroy).
func (s *Sandbox) watchExit(template bool) error {
	if !template {
		go s.reap()
		return nil
	}
	fd, err := unix.PidfdOpen(s.pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("sandbox %s: pidfd: %w", s.id, err)
	}
	s.pidfd = os.NewFile(uintptr(fd), "pidfd")
	go s.watch()
	return nil
}

// reap waits for the sandboxed process (PID 1 of the sandbox: when it
// dies, the kernel kills every other process of its PID namespace).
func (s *Sandbox) reap() {
	err := s.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		err = nil
	default:
		s.werr = err
	}
	ws, _ := s.cmd.ProcessState.Sys().(syscall.WaitStatus)
	s.setExit(ws)
	close(s.done)
}

// setExit records how the process ended from its wait status.
func (s *Sandbox) setExit(ws syscall.WaitStatus) {
	s.exit.Code = ws.ExitStatus()
	if ws.Signaled() {
		s.exit.Signal = ws.Signal()
		if s.exit.Signal == syscall.SIGKILL {
			if oom, oerr := s.cg.OOMKilled(); oerr == nil {
				s.exit.OOMKilled = oom
			}
		}
	}
}

// Pid is the host pid of the sandboxed process.
func (s *Sandbox) Pid() int { return s.pid }

// UpperDir is the host path of the overlay upper layer of a Template
// sandbox (what the template wrote under /, overlay whiteouts included),
// for use as an EnvConfig.Lowers entry of its forks; "" for other
// sandboxes. It stays until Destroy (or Sweep).
func (s *Sandbox) UpperDir() string { return s.upper }

// LiftMemoryLimit removes the memory limit of the sandbox's cgroup (see
// cgroup.Group.LiftMemoryLimit): for a template once it is frozen.
func (s *Sandbox) LiftMemoryLimit() error { return s.cg.LiftMemoryLimit() }

// ID is the instance id the sandbox was started with.
func (s *Sandbox) ID() string { return s.id }

// Phases returns the measured setup phases, in order: for Start those of
// Prestart then of Exec (see Pending.Phases and Pending.Exec); for
// Pending.Exec its own; for an adopted sandbox those of NewEnv (see
// Env.Phases).
func (s *Sandbox) Phases() []timing.Phase { return append([]timing.Phase(nil), s.phases...) }

// Done is closed when the sandboxed process has exited and been reaped.
func (s *Sandbox) Done() <-chan struct{} { return s.done }

// Wait blocks until the sandboxed process exits and returns how it ended.
// Any number of callers may wait.
func (s *Sandbox) Wait() (Exit, error) {
	<-s.done
	return s.exit, s.werr
}

// Destroy kills everything in the sandbox, reaps it, deletes its cgroup
// and run dir. It is idempotent and safe to call after the process exited.
func (s *Sandbox) Destroy() error {
	s.destroyOnce.Do(func() {
		select {
		case <-s.done:
		default:
			s.kill()
			s.waitDead()
		}
		if s.cmd != nil && s.pidfd != nil {
			// A template: dead now; reap it unless its tracer did.
			var ws unix.WaitStatus
			_, _ = unix.Wait4(s.pid, &ws, unix.WNOHANG|unix.WALL, nil)
			s.pidfd.Close()
		}
		var errs []error
		if s.env != nil {
			if err := s.env.retire(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := s.cg.Kill(); err != nil {
			errs = append(errs, fmt.Errorf("cgroup kill: %w", err))
		}
		if err := s.cg.Delete(); err != nil {
			errs = append(errs, fmt.Errorf("cgroup delete: %w", err))
		}
		sandboxinit.UnmountOverlay(s.dir)
		if err := os.Remove(s.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		if s.pidfd != nil {
			s.pidfd.Close()
		}
		if err := errors.Join(errs...); err != nil {
			s.destroyErr = fmt.Errorf("sandbox %s: destroy: %w", s.id, err)
		}
	})
	return s.destroyErr
}

// Sweep kills and removes whatever a killed daemon left under
// cgroupParent: cgroups (with their processes) and per-instance run dirs
// (with every mount the daemon made there, stacked or busy ones too; see
// UnmountUnder). It returns the number of instances removed, and what it
// could not remove (a *Leftover per path, joined): leftovers never keep
// the next sweep from trying again.
func Sweep(cgroupParent string) (int, error) {
	if cgroupParent == "" {
		cgroupParent = DefaultCgroupParent
	}
	n, err := cgroup.Sweep(cgroupParent)
	dirs, rerr := sweepRunDir(filepath.Join(RunDir, cgroupParent))
	return max(n, dirs), errors.Join(err, rerr)
}

// Tidy removes cgroupParent's cgroup and run directories if nothing uses
// them any more: what a one-shot command (catalyzer run, restore
// --sandbox) calls when it is done, where a daemon would Sweep at start.
func Tidy(cgroupParent string) error {
	if cgroupParent == "" {
		cgroupParent = DefaultCgroupParent
	}
	err := cgroup.RemoveParent(cgroupParent)
	if rerr := os.Remove(filepath.Join(RunDir, cgroupParent)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && !errors.Is(rerr, unix.ENOTEMPTY) {
		err = errors.Join(err, rerr)
	}
	return err
}

// waitDead waits until the killed process is reported dead. A process
// watched by pidfd (a template, an adopted one) may have been reaped by
// its tracer or parent before we looked: if it is gone and its pidfd
// never turned readable (seen with a process killed while ptrace-stopped),
// closing the pidfd ends the watch.
func (s *Sandbox) waitDead() {
	if s.pidfd == nil {
		<-s.done
		return
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			if s.reaped() {
				s.pidfd.Close()
				<-s.done
				return
			}
		}
	}
}

// reaped reports whether the process behind s.pidfd is gone (reaped):
// signal 0 through the pidfd, which names that process and no other (a
// kill(pid, 0) would find whatever process got the pid since; this VM
// recycles pids within minutes: pid_max 32768).
func (s *Sandbox) reaped() bool {
	rc, err := s.pidfd.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	_ = rc.Control(func(fd uintptr) { gone = unix.PidfdSendSignal(int(fd), 0, nil, 0) == unix.ESRCH })
	return gone
}

// mkRunParent makes dir (RunDir/<parent>, or the default root's base)
// and every directory from it up to the state root, filepath.Dir(RunDir),
// searchable by anyone, whoever made them first and with what mode: root
// of a user namespace (an unprivileged host uid) must reach its prepared
// root through all of them, and an earlier run (or another tool) may have
// left the state root 0700. Only the search bits are added: what was
// listable stays so, and nothing above the state root is touched.
func mkRunParent(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	top := filepath.Dir(RunDir)
	for d := filepath.Clean(dir); d == top || strings.HasPrefix(d, top+"/"); d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if m := st.Mode().Perm(); m&0o011 != 0o011 {
			if err := os.Chmod(d, m|0o011); err != nil {
				return err
			}
		}
	}
	return nil
}

// newInstance creates the run dir and the cgroup of instance id (what
// names it in errors: "sandbox", "sandbox env") and pushes their removal
// on c. A live id is errdefs.ErrConflict.
func newInstance(what, parent, id string, limits cgroup.Limits, c *cleanup.Cleanup) (string, *cgroup.Group, error) {
	dir := instanceDir(parent, id)
	// 0711: root of a user namespace (unmapped on the host) must traverse
	// to its overlay; the instance dirs themselves list nothing.
	if err := mkRunParent(filepath.Dir(dir)); err != nil {
		return "", nil, fmt.Errorf("%s %s: %w", what, id, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", nil, fmt.Errorf("%s %s: already exists: %w", what, id, errdefs.ErrConflict)
		}
		return "", nil, fmt.Errorf("%s %s: %w", what, id, err)
	}
	c.Add(func() { _ = os.Remove(dir) })
	cg, err := cgroup.New(parent, id, limits)
	if err != nil {
		return "", nil, fmt.Errorf("%s %s: cgroup: %w", what, id, err)
	}
	c.Add(func() { _ = cg.Kill(); _ = cg.Delete() })
	return dir, cg, nil
}

// FavorMigrations makes moving processes into cgroups cheap while the
// daemon runs, on a cgroup v1 host (cgroup.FavorMigrations); the
// hierarchy is mounted under RunDir, beside the instances of
// cgroupParent. Call release once every instance is gone.
func FavorMigrations(cgroupParent string) (release func() error, err error) {
	return cgroup.FavorMigrations(filepath.Join(RunDir, cgroupParent+".favordynmods"))
}
