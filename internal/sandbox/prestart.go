package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/cleanup"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
	"github.com/catalyzer/catalyzer/internal/sandbox/initwire"
	"github.com/catalyzer/catalyzer/internal/sandbox/sandboxinit"
	"github.com/catalyzer/catalyzer/internal/timing"
)

// pendingState is where a Pending is in its life, changed under
// Pending.mu:
//
//	ready --Exec--> used      (the Sandbox owns it from then on; a failed
//	                           Exec released it)
//	ready --Release--> used
type pendingState int

const (
	pendingReady pendingState = iota
	pendingUsed
)

// Pending is a sandbox built but for its program: its cgroup, its
// namespaces (PID included), its root and network, and its init helper,
// PID 1 there, waiting for the process part. Exec runs the program in
// it; a pool (Pool) keeps Pendings ready off the critical path, so that
// only the exec of the program is on it. Release destroys one never
// used.
type Pending struct {
	cfg    Config // with its defaults
	cmd    *exec.Cmd
	h      launched
	cg     *cgroup.Group
	dir    string
	phases []timing.Phase

	mu    sync.Mutex
	state pendingState
}

// Prestart builds the sandbox cfg describes up to its program: cfg.Process
// must be zero, Exec gets it. It returns once the init helper reported the
// env ready, or with its error (an *InitError); whatever was half-built is
// undone on failure.
func Prestart(cfg Config) (*Pending, error) {
	clock := newPhaseClock()
	if cfg.Argv != nil || cfg.ExtraFiles != nil || cfg.Stdout != nil || cfg.Stderr != nil {
		return nil, fmt.Errorf("sandbox %s: prestart: the process part goes to Exec: %w", cfg.ID, errdefs.ErrInvalid)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var c cleanup.Cleanup
	defer c.Clean()

	dir, cg, err := newInstance("sandbox", cfg.CgroupParent, cfg.ID, cfg.Limits, &c)
	if err != nil {
		return nil, err
	}
	clock.Now("cgroup")
	w := envWire(cfg.EnvConfig, dir)
	w.Prepared = cfg.OwnUserNS || cfg.Template
	if w.Prepared {
		// Real root builds the root here (see doc.go); the helper pivots
		// into its copy. A template's upper layer stays visible here for
		// forked envs.
		rootUID := 0
		if cfg.OwnUserNS {
			rootUID = cfg.UIDBase
		}
		if err := prepareRoot(dir, w.Lower, cfg.UpperBytes, rootUID, cfg.Binds, &c); err != nil {
			return nil, fmt.Errorf("sandbox %s: rootfs: %w", cfg.ID, err)
		}
		clock.Now("rootfs-host")
	}

	cmd := initCmd(cfg)
	h, err := helperLaunch{what: "sandbox", id: cfg.ID, cmd: cmd, cg: cg, config: w, sendMark: "join", markNow: clock.Now}.run(&c)
	if err != nil {
		return nil, err
	}
	c.Add(h.close)
	clock.Add(h.marks)
	// The helper holds its own copy of a root prepared here: drop ours,
	// but keep a template's tmpfs (its upper dir) until Destroy.
	switch {
	case cfg.Template:
		_ = unix.Unmount(filepath.Join(dir, "merged"), unix.MNT_DETACH)
	case w.Prepared:
		sandboxinit.UnmountOverlay(dir)
	}
	clock.Now("ready")
	c.Release()
	return &Pending{cfg: cfg, cmd: cmd, h: h, cg: cg, dir: dir, phases: clock.Phases()}, nil
}

// ID is the id the sandbox will have.
func (p *Pending) ID() string { return p.cfg.ID }

// Phases returns the measured phases of Prestart, in order: "cgroup"
// (validate, run dir, cgroup created), "rootfs-host" (OwnUserNS or
// Template only: overlay built by the daemon), "spawn" (clone+exec of the
// init helper), "join" (helper added to the cgroup, config sent),
// "config" (the helper's Go runtime started and read its config),
// "rootfs", "net" (hostname, loopback), "ready" (until the daemon saw the
// helper's ready report).
func (p *Pending) Phases() []timing.Phase { return append([]timing.Phase(nil), p.phases...) }

// Exec starts proc in the sandbox and returns it once proc has been
// exec'd. A Pending runs one program: a second Exec, or one after
// Release, is errdefs.ErrConflict. A bad proc is errdefs.ErrInvalid and
// leaves p ready; any other failure releases p. The Sandbox's Phases are
// Exec's: "send" (the process part sent), "process" (the helper has its
// files in place), "security" (rlimits, cwd, caps, no_new_privs, seccomp,
// fds), "exec" (execve until the daemon saw the status pipe close).
func (p *Pending) Exec(proc Process) (*Sandbox, error) {
	clock := newPhaseClock()
	proc, err := proc.withDefaults()
	if err != nil {
		return nil, err
	}
	w, files, err := processWire(proc, p.cfg.Template)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", p.cfg.ID, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != pendingReady {
		return nil, fmt.Errorf("sandbox %s: already used: %w", p.cfg.ID, errdefs.ErrConflict)
	}
	p.state = pendingUsed
	c := cleanup.Make(func() { _ = p.destroy() })
	defer c.Clean()

	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	clock.Now("send")
	if err := initwire.Send(int(p.h.config.Fd()), w, fds); err != nil {
		return nil, fmt.Errorf("sandbox %s: send process: %w", p.cfg.ID, err)
	}
	marks, ready, err := p.h.reports.Next()
	if err == nil && ready {
		err = fmt.Errorf("a second ready report: %w", errdefs.ErrInvalid)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", p.cfg.ID, err)
	}
	p.h.close()
	clock.Add(marks)
	clock.Now("exec")

	s := &Sandbox{id: p.cfg.ID, pid: p.cmd.Process.Pid, cmd: p.cmd, cg: p.cg, dir: p.dir, done: make(chan struct{}), phases: clock.Phases()}
	if p.cfg.OwnUserNS {
		s.uidBase = p.cfg.UIDBase
	}
	if p.cfg.Template {
		s.upper = filepath.Join(p.dir, "upper")
	}
	if err := s.watchExit(p.cfg.Template); err != nil {
		return nil, err
	}
	c.Release()
	return s, nil
}

// Release destroys a Pending never used: it kills the helper, deletes the
// cgroup and the run dir. It is idempotent, and does nothing once Exec
// was called.
func (p *Pending) Release() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != pendingReady {
		return nil
	}
	p.state = pendingUsed
	return p.destroy()
}

// destroy kills and reaps the helper, closes its channels, unmounts what
// is left of its root here, deletes the cgroup and the run dir.
func (p *Pending) destroy() error {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.h.close()
	sandboxinit.UnmountOverlay(p.dir)
	var errs []error
	if err := p.cg.Kill(); err != nil {
		errs = append(errs, fmt.Errorf("cgroup kill: %w", err))
	}
	if err := p.cg.Delete(); err != nil {
		errs = append(errs, fmt.Errorf("cgroup delete: %w", err))
	}
	if err := os.Remove(p.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sandbox %s: release: %w", p.cfg.ID, err)
	}
	return nil
}
