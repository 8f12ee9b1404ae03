package oci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
)

// Status is a container's lifecycle state, as `state` reports it.
//
//	create ──► created ──start──► running ◄──resume── paused
//	              │                  │  └──pause──────►  │
//	              └──────── exit / kill ──────┬──────────┘
//	                                          ▼
//	                      stopped ──delete──► (gone)
//
// created, running and paused end in stopped when the init exits; delete
// --force works in every state. Each state is a type (createdState, ...)
// whose methods refuse what it cannot do with errdefs.ErrConflict
// ("cannot pause a container in created state").
type Status string

const (
	Created Status = "created"
	Running Status = "running"
	Paused  Status = "paused"
	Stopped Status = "stopped"
)

// Container is one container as the state root records it.
type Container struct {
	root Root
	rec  *record
	cg   *cgroup.Group // nil once deleted or never made
}

// Load opens container id.
func (r Root) Load(id string) (*Container, error) {
	rec, err := r.load(id)
	if err != nil {
		return nil, err
	}
	c := &Container{root: r, rec: rec}
	if cg, err := cgroup.OpenSpec(rec.CgroupPath); err == nil {
		c.cg = cg
	}
	return c, nil
}

// ID, Pid, Bundle: what the state file recorded.
func (c *Container) ID() string     { return c.rec.ID }
func (c *Container) Pid() int       { return c.rec.Pid }
func (c *Container) Bundle() string { return c.rec.Bundle }

// lifecycle is the set of operations, implemented by each state.
type lifecycle interface {
	status() Status
	start() error
	pause() error
	resume() error
	kill(sig unix.Signal, all bool) error
	delete(force bool) error
	checkpoint(o CheckpointOpts) error
}

// state decides the container's current state from the kernel: its init
// alive, the exec fifo still there (not started), its cgroup frozen.
func (c *Container) state() lifecycle {
	switch {
	case !c.rec.alive():
		return stoppedState{c}
	case c.fifoExists():
		return createdState{c}
	case c.cg != nil && c.cg.Frozen():
		return pausedState{c}
	}
	return runningState{c}
}

// Status is the container's current state.
func (c *Container) Status() Status { return c.state().status() }

func (c *Container) fifoExists() bool {
	_, err := os.Stat(filepath.Join(c.root.dir(c.rec.ID), fifoFile))
	return err == nil
}

func refuse(s lifecycle, op string) error {
	return fmt.Errorf("cannot %s a container in %s state: %w", op, s.status(), errdefs.ErrConflict)
}

// notRunning is runc's message for signalling a stopped container; the
// shim looks for these words.
func notRunning(id string) error {
	return fmt.Errorf("container %s: container not running: %w", id, errdefs.ErrNotFound)
}

// Start lets a created container's init exec its process, then runs the
// poststart hooks.
func (c *Container) Start() error { return c.state().start() }

// Pause freezes every process of the container (cgroup freezer).
func (c *Container) Pause() error { return c.state().pause() }

// Resume thaws a paused container.
func (c *Container) Resume() error { return c.state().resume() }

// Kill sends sig to the init, or with all to every process of the
// container's cgroup.
func (c *Container) Kill(sig unix.Signal, all bool) error { return c.state().kill(sig, all) }

// Delete removes a stopped container (with force, any container, killing
// it first): its cgroup, its state directory; then the poststop hooks.
func (c *Container) Delete(force bool) error { return c.state().delete(force) }

type createdState struct{ c *Container }
type runningState struct{ c *Container }
type pausedState struct{ c *Container }
type stoppedState struct{ c *Container }

func (s createdState) status() Status { return Created }
func (s runningState) status() Status { return Running }
func (s pausedState) status() Status  { return Paused }
func (s stoppedState) status() Status { return Stopped }

func (s createdState) start() error { return s.c.start() }
func (s runningState) start() error { return refuse(s, "start") }
func (s pausedState) start() error  { return refuse(s, "start") }
func (s stoppedState) start() error { return refuse(s, "start") }

func (s createdState) pause() error { return refuse(s, "pause") }
func (s runningState) pause() error { return s.c.freeze(true) }
func (s pausedState) pause() error  { return refuse(s, "pause") }
func (s stoppedState) pause() error { return refuse(s, "pause") }

func (s createdState) resume() error { return refuse(s, "resume") }
func (s runningState) resume() error { return refuse(s, "resume") }
func (s pausedState) resume() error  { return s.c.freeze(false) }
func (s stoppedState) resume() error { return refuse(s, "resume") }

func (s createdState) kill(sig unix.Signal, all bool) error { return s.c.signal(sig, all) }
func (s runningState) kill(sig unix.Signal, all bool) error { return s.c.signal(sig, all) }
func (s pausedState) kill(sig unix.Signal, all bool) error {
	// A frozen task gets the signal once thawed; SIGKILL must not wait
	// for a resume that never comes.
	if err := s.c.signal(sig, all); err != nil {
		return err
	}
	if sig == unix.SIGKILL {
		return s.c.freeze(false)
	}
	return nil
}
func (s stoppedState) kill(sig unix.Signal, all bool) error {
	if all && s.c.cg != nil {
		// The init is gone; stragglers in its cgroup may remain.
		return s.c.signal(sig, true)
	}
	return notRunning(s.c.rec.ID)
}

// A created container is deleted without --force, as runc does: its
// process never ran.
func (s createdState) delete(bool) error { return s.c.destroy() }
func (s runningState) delete(force bool) error {
	if !force {
		return fmt.Errorf("cannot delete container %s that is not stopped: %s: %w", s.c.rec.ID, Running, errdefs.ErrConflict)
	}
	return s.c.destroy()
}
func (s pausedState) delete(force bool) error {
	if !force {
		return fmt.Errorf("cannot delete container %s that is not stopped: %s: %w", s.c.rec.ID, Paused, errdefs.ErrConflict)
	}
	return s.c.destroy()
}
func (s stoppedState) delete(bool) error { return s.c.destroy() }

// A running or paused container is checkpointed (containerd pauses a
// task before it checkpoints it); a created one has no process of its
// own yet, a stopped one is gone.
func (s createdState) checkpoint(CheckpointOpts) error   { return refuse(s, "checkpoint") }
func (s runningState) checkpoint(o CheckpointOpts) error { return s.c.checkpoint(o) }
func (s pausedState) checkpoint(o CheckpointOpts) error {
	// A frozen task never reaches the ptrace stop the dump needs: thaw
	// it for the dump (it runs until it is seized) and freeze it again
	// if it is left running.
	if err := s.c.freeze(false); err != nil {
		return err
	}
	err := s.c.checkpoint(o)
	if o.LeaveRunning || err != nil {
		if ferr := s.c.freeze(true); ferr != nil {
			return errors.Join(err, ferr)
		}
	}
	return err
}
func (s stoppedState) checkpoint(CheckpointOpts) error { return refuse(s, "checkpoint") }

func (c *Container) start() error {
	fifo := filepath.Join(c.root.dir(c.rec.ID), fifoFile)
	fd, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("container %s: start: open exec fifo: %w", c.rec.ID, err)
	}
	defer unix.Close(fd)
	// Wait for the init's byte; stop if the init dies meanwhile.
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("container %s: start: %w", c.rec.ID, err)
		}
		if n > 0 && fds[0].Revents&unix.POLLIN != 0 {
			var b [1]byte
			if n, _ := unix.Read(fd, b[:]); n == 1 {
				break
			}
		}
		if !c.rec.alive() {
			return fmt.Errorf("container %s: start: init exited before start", c.rec.ID)
		}
	}
	if err := os.Remove(fifo); err != nil {
		return fmt.Errorf("container %s: start: %w", c.rec.ID, err)
	}
	if c.rec.Boot.Mode == BootRestore {
		if err := c.restoreOnStart(); err != nil {
			// Nothing of the image's process may run half restored.
			_ = unix.Kill(c.rec.Pid, unix.SIGKILL)
			return fmt.Errorf("container %s: start: %w", c.rec.ID, err)
		}
	}
	if c.rec.Hooks != nil {
		// poststart failures are reported, the container keeps running
		// (runtime-spec: a warning), except that runc fails start: so
		// do we, and the shim then kills it.
		if err := runHooks("poststart", c.rec.Hooks.Poststart, c.rec.specState(specs.StateRunning)); err != nil {
			return fmt.Errorf("container %s: %w", c.rec.ID, err)
		}
	}
	return nil
}

func (c *Container) freeze(on bool) error {
	if c.cg == nil {
		return fmt.Errorf("container %s: no cgroup: %w", c.rec.ID, errdefs.ErrNotFound)
	}
	var err error
	if on {
		err = c.cg.Freeze()
	} else {
		err = c.cg.Thaw()
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", c.rec.ID, err)
	}
	return nil
}

func (c *Container) signal(sig unix.Signal, all bool) error {
	if !all {
		if err := unix.Kill(c.rec.Pid, sig); err != nil {
			if errors.Is(err, unix.ESRCH) {
				return notRunning(c.rec.ID)
			}
			return fmt.Errorf("container %s: kill: %w", c.rec.ID, err)
		}
		return nil
	}
	if c.cg == nil {
		return notRunning(c.rec.ID)
	}
	pids, err := c.cg.Procs()
	if err != nil {
		return fmt.Errorf("container %s: kill --all: %w", c.rec.ID, err)
	}
	for _, p := range pids {
		_ = unix.Kill(p, sig)
	}
	return nil
}

// destroy kills what is left, removes the cgroup and the state dir, then
// runs the poststop hooks (their failure is reported, the container is
// gone anyway).
func (c *Container) destroy() error {
	var errs []error
	// A template's holder first: it kills the template and reaps it as
	// its tracer, so that the shim can reap it.
	c.rec.stopHolder()
	if c.rec.alive() {
		_ = unix.Kill(c.rec.Pid, unix.SIGKILL)
		if c.cg != nil {
			_ = c.cg.Thaw()
		}
		deadline := time.Now().Add(10 * time.Second)
		for c.rec.alive() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if c.cg != nil {
		if err := c.cg.Delete(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(c.root.dir(c.rec.ID)); err != nil {
		errs = append(errs, err)
	}
	if c.rec.Hooks != nil {
		if err := runHooks("poststop", c.rec.Hooks.Poststop, c.rec.specState(specs.StateStopped)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("container %s: delete: %w", c.rec.ID, err)
	}
	return nil
}

// StateJSON is runc's `state` output.
type StateJSON struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      Status            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner"`
}

// State is the container's state as runc's `state` prints it; a stopped
// container's pid is 0.
func (c *Container) State() StateJSON {
	st := c.Status()
	pid := c.rec.Pid
	if st == Stopped {
		pid = 0
	}
	return StateJSON{OCIVersion: specs.Version, ID: c.rec.ID, Pid: pid, Status: st,
		Bundle: c.rec.Bundle, Rootfs: c.rec.Rootfs, Created: c.rec.Created,
		Annotations: c.rec.Annotations}
}

// Processes lists the host pids of the container's processes.
func (c *Container) Processes() ([]int, error) {
	if c.cg == nil {
		return nil, nil
	}
	return c.cg.Procs()
}

// Update applies new resources to the container's cgroup.
func (c *Container) Update(res *specs.LinuxResources) error {
	if c.cg == nil {
		return notRunning(c.rec.ID)
	}
	if err := c.cg.Update(res); err != nil {
		return fmt.Errorf("container %s: %w", c.rec.ID, err)
	}
	return nil
}
