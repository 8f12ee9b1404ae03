package boot

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/catalyzer/catalyzer/internal/cleanup"
	"github.com/catalyzer/catalyzer/internal/image"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/sandbox"
)

// oneShotParent is the cgroup parent of one-shot restores (catalyzer
// restore --sandbox): apart from any daemon's.
const oneShotParent = "catalyzer-cli"

// SandboxRestore is one image restored by RestoreInSandbox: its process,
// PID 1 of a sandbox of its own, and what it takes down with it.
type SandboxRestore struct {
	Pid   int         // host pid of the restored process
	Stats image.Stats // how the restore went
	cmd   *exec.Cmd
	sb    *sandbox.Sandbox
	undo  cleanup.Cleanup
}

// RestoreInSandbox restores img (any process's image, its credentials
// the host's: not in a user namespace) into a fresh sandbox env: an
// overlay root with the image's rootfs changes, its own namespaces and
// cgroup, Docker's capabilities and seccomp profile. files become the
// restorer's fds 3, 4, ... for the image's reconnected fds (reconnect).
// On error nothing of it remains; else Close takes it all down.
func RestoreInSandbox(tr *ptrace.Tracer, img *image.Image, files []*os.File, reconnect map[int]int, prefetch bool) (*SandboxRestore, error) {
	r := &SandboxRestore{}
	fail := func(err error) (*SandboxRestore, error) {
		r.undo.Clean()
		return nil, err
	}
	r.undo.Add(func() { sandbox.Tidy(oneShotParent) })
	id := NewID("cli")
	cfg := sandbox.EnvConfig{ID: id, Hostname: id, CgroupParent: oneShotParent, Network: sandbox.NetworkNone,
		Binds: []sandbox.Bind{{Source: img.Dir, Target: ImageMount}}}
	if src := filepath.Join(img.Dir, image.LayerDir); exists(src) {
		size, err := image.LayerBytes(src, sandbox.DefaultUpperBytes)
		if err != nil {
			return fail(err)
		}
		layer, err := sandbox.NewLayerTmpfs(oneShotParent, "layer-"+id, size)
		if err != nil {
			return fail(err)
		}
		r.undo.Add(func() { layer.Release() })
		if err := image.CaptureLayer(src, layer.Dir); err != nil {
			return fail(err)
		}
		cfg.Lowers = []string{filepath.Join(layer.Dir, image.LayerDir)}
	}
	cmd, tc, sb, err := StartRestorerIn(tr, cfg, 0, files, img.ExecAddr())
	if err != nil {
		return fail(err)
	}
	r.cmd, r.sb = cmd, sb
	r.undo.Add(func() { sb.Destroy(); cmd.Wait() })
	pid, st, err := image.Restore(tr, img, image.RestoreOptions{Tracee: tc, Reconnect: reconnect, Prefetch: prefetch,
		PagesPath: filepath.Join(ImageMount, image.PagesFile), Epilogue: LockdownBatch, ThreadCaps: &threadCaps})
	if err != nil {
		return fail(err)
	}
	r.Pid, r.Stats = pid, st
	return r, nil
}

// Wait waits for the restored process and returns its exit code (-1 when
// a signal killed it).
func (r *SandboxRestore) Wait() (int, error) {
	err := r.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		return ee.ExitCode(), nil
	}
	return 0, err
}

// Close kills what is left of the sandbox and removes it all (cgroup,
// run dir, layer); idempotent.
func (r *SandboxRestore) Close() { r.undo.Clean() }

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
