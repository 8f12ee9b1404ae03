package oci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/image"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// CheckpointOpts are checkpoint's options, as runc's (containerd's shim
// passes --image-path, --work-path and, unless the task is to exit,
// --leave-running).
type CheckpointOpts struct {
	ImagePath    string // the image directory (created)
	WorkPath     string // where checkpoint.log goes ("": nowhere)
	LeaveRunning bool   // default: the container's process is killed after the dump
}

// checkpointLog is the file in --work-path that says what was dumped.
const checkpointLog = "checkpoint.log"

// imageStdio are the descriptors a container's image does not dump: they
// are the shim's pipes, and a restore puts its own in their place.
var imageStdio = []int{0, 1, 2}

// Checkpoint dumps the container's process (every thread of it) into an
// image directory with package image's engine, then kills it (the shim
// sees the exit) or, with LeaveRunning, lets it go on. The process must
// be alone in its container (no children: image refuses them by name);
// its stdio is reconnected, not dumped; its seccomp filter is not
// dumped but installed again from the restoring bundle. A refusal
// (errdefs.ErrNotSupported) names what could not be dumped and leaves
// the container running as it was, with no image directory left.
func (c *Container) Checkpoint(o CheckpointOpts) error { return c.state().checkpoint(o) }

func (c *Container) checkpoint(o CheckpointOpts) error {
	id := c.rec.ID
	if o.ImagePath == "" {
		return invalid("container %s: checkpoint needs --image-path", id)
	}
	if c.rec.Boot.Template {
		return fmt.Errorf("container %s is a fork template (%s=true): checkpoint its forks, not the template: %w", id, AnnotationTemplate, errdefs.ErrNotSupported)
	}
	dir, err := filepath.Abs(o.ImagePath)
	if err != nil {
		return fmt.Errorf("container %s: image path: %w", id, err)
	}
	made, err := mkImageDir(dir)
	if err != nil {
		return fmt.Errorf("container %s: image path: %w", id, err)
	}
	opts := image.Options{SeccompReinstalled: true, CopyAnon: true}
	for _, fd := range imageStdio {
		if _, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", c.rec.Pid, fd)); err == nil {
			opts.Reconnect = append(opts.Reconnect, fd)
		}
	}
	// oom_score_adj is the runtime's setting for the container (the
	// shim's, inherited, or process.oomScoreAdj), not state of the
	// process: it is set aside for the dump (the image engine restores
	// only 0) and given back after; a restore gets the restoring
	// container's.
	adjFile := fmt.Sprintf("/proc/%d/oom_score_adj", c.rec.Pid)
	if adj, err := os.ReadFile(adjFile); err == nil && strings.TrimSpace(string(adj)) != "0" {
		if err := os.WriteFile(adjFile, []byte("0"), 0); err != nil {
			return fmt.Errorf("container %s: checkpoint: set oom_score_adj aside: %w", id, err)
		}
		defer func() { _ = os.WriteFile(adjFile, adj, 0) }() // gone with the process if it was killed
	}
	start := time.Now()
	img, err := dumpProcess(c.rec.Pid, dir, opts, o.LeaveRunning)
	if err != nil {
		if made {
			_ = os.RemoveAll(dir)
		} else {
			removeImageFiles(dir)
		}
		return fmt.Errorf("container %s: checkpoint: %w", id, err)
	}
	if o.WorkPath != "" {
		if err := os.MkdirAll(o.WorkPath, 0o700); err == nil {
			msg := fmt.Sprintf("checkpointed container %s (pid %d) into %s in %v: %d mappings, %d fds, %d threads, pages.img %d bytes, left running: %v\n",
				id, c.rec.Pid, img.Dir, time.Since(start).Round(time.Microsecond), len(img.VMAs), len(img.FDs), 1+len(img.Threads), img.PagesSize(), o.LeaveRunning)
			_ = os.WriteFile(filepath.Join(o.WorkPath, checkpointLog), []byte(msg), 0o600)
		}
	}
	return nil
}

// mkImageDir makes dir if it is missing (reporting that it did) and
// refuses one that already holds an image.
func mkImageDir(dir string) (made bool, err error) {
	if err := os.Mkdir(dir, 0o700); err == nil {
		return true, nil
	} else if !errors.Is(err, os.ErrExist) {
		return false, err
	}
	if _, err := os.Stat(filepath.Join(dir, image.ManifestFile)); err == nil {
		return false, fmt.Errorf("%s already holds an image: %w", dir, errdefs.ErrConflict)
	}
	return false, nil
}

// removeImageFiles removes what a failed dump wrote into a directory
// the caller made (containerd's shim makes the image path itself).
func removeImageFiles(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".bin") || strings.HasSuffix(e.Name(), ".img") || e.Name() == image.LayerDir {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// dumpProcess is image.Checkpoint for a process in other namespaces
// than ours (a container's: image.Checkpoint refuses those, since its
// restore would not put it back; ours restores it into a container
// again). Every thread is seized with its seccomp filter suspended (the
// injected reads would be filtered), dumped, then killed or let go.
func dumpProcess(pid int, dir string, opts image.Options, leaveRunning bool) (*image.Image, error) {
	if _, ok := procStart(pid); !ok {
		return nil, fmt.Errorf("process %d is gone: %w", pid, errdefs.ErrNotFound)
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	g, err := tr.SeizeGroup(pid, ptrace.TraceFork(false), ptrace.TraceClone(false), ptrace.ExitKill(false), ptrace.SuspendSeccomp(true))
	if err != nil {
		return nil, fmt.Errorf("seize %d: %w", pid, err)
	}
	release := func() error {
		return tr.Do(func() error {
			return errors.Join(g.Leader().RemoveExecutor(), g.Detach())
		})
	}
	var img *image.Image
	err = tr.Do(func() error {
		states, err := g.States()
		if err != nil {
			return err
		}
		o := opts
		o.Threads = states[1:]
		img, err = image.CheckpointTracee(g.Leader(), dir, o)
		return err
	})
	if err != nil {
		// Refused or failed: the process goes on as it was.
		if rerr := release(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("let %d go: %w", pid, rerr))
		}
		return nil, err
	}
	if leaveRunning {
		if err := release(); err != nil {
			return nil, fmt.Errorf("let %d go after the dump: %w", pid, err)
		}
		return img, nil
	}
	// Killed while stopped: it runs nothing more. Its traced threads
	// report their deaths to us; reaped here, the process becomes its
	// parent's (the shim's) zombie, which is how the shim learns of it.
	_ = unix.Kill(pid, unix.SIGKILL)
	tids := make([]int, len(g.Threads))
	for i, th := range g.Threads {
		tids[i] = th.Pid()
	}
	_ = tr.Do(func() error {
		ptrace.ReapKilled(tids, 5*time.Second)
		return nil
	})
	_ = g.Detach()
	return img, nil
}
