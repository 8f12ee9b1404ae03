package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/cleanup"
	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
	"github.com/catalyzer/catalyzer/internal/sandbox/initwire"
	"github.com/catalyzer/catalyzer/internal/sandbox/sandboxinit"
)

// MaybeInit must be the first call in main (and in TestMain of packages
// that start sandboxes). In the daemon it returns at once. In a process
// this package re-executed it never returns: it runs the init helper
// (package sandboxinit) or a helper registered with RegisterHelper.
func MaybeInit() {
	if name, ok := os.LookupEnv(helperEnv); ok {
		runHelper(name) // never returns
	}
	if sandboxinit.IsHelper() {
		sandboxinit.Main() // never returns
	}
}

// envWire is the env part of the helper's config (cfg has its defaults).
func envWire(cfg EnvConfig, dir string) initwire.Config {
	return initwire.Config{
		Lower: envLower(cfg), Dir: dir, UpperBytes: cfg.UpperBytes,
		TmpBytes: DefaultTmpBytes, ShmBytes: DefaultShmBytes, Binds: cfg.Binds,
		Masked: MaskedPaths, Readonly: ReadonlyPaths,
		Hostname: cfg.Hostname, NewNet: cfg.Network != NetworkHost,
	}
}

// withProcess adds the process part to w (p has its defaults).
func withProcess(w initwire.Config, p Process, template bool, prog []unix.SockFilter) (initwire.Config, error) {
	caps, err := parseCaps(p.Caps)
	if err != nil {
		return w, err
	}
	w.Argv, w.Env, w.Cwd, w.Rlimits = p.Argv, p.Env, p.Cwd, p.Rlimits
	w.Caps, w.Template, w.Seccomp, w.NExtra = caps, template, prog, len(p.ExtraFiles)
	return w, nil
}

// helperLaunch is one start of the init helper (this binary re-executed,
// or nsenter ahead of it): what Start and NewEnv share.
type helperLaunch struct {
	what, id string
	// cmd has its Path, Args, Env, SysProcAttr and output set; its
	// ExtraFiles are the caller's (fds 3, 4, ...). The config and status
	// pipes follow them, then after.
	cmd   *exec.Cmd
	after []*os.File
	cg    *cgroup.Group
	// config is sent once the helper is in cg; sendMark names that step.
	config   initwire.Config
	sendMark string
	markNow  func(string)
}

// launched is a helper that got through its setup: its reports' marks,
// whether it reported ready (an Env's holder), and the config pipe's
// write end (an Env keeps it; Start closes it).
type launched struct {
	marks []initwire.Mark
	ready bool
	cfgW  *os.File
}

// run starts the helper in its cgroup (born there on cgroup v2: no
// migration, which costs a synchronize_rcu, ~20 ms measured on a 16-core
// host, whenever attaches are sparse; added before it reads its config
// on v1), sends its config and reads its status reports to EOF. What it
// made is undone by c on failure.
func (l helperLaunch) run(c *cleanup.Cleanup) (launched, error) {
	fail := func(f string, err error) (launched, error) {
		return launched{}, fmt.Errorf("%s %s: "+f+": %w", l.what, l.id, err)
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return fail("config pipe", err)
	}
	c.Add(func() { cfgR.Close(); cfgW.Close() })
	stR, stW, err := os.Pipe()
	if err != nil {
		return fail("status pipe", err)
	}
	defer stR.Close()
	c.Add(func() { stW.Close() })

	cmd := l.cmd
	cmd.Env = append(cmd.Env, initwire.InitEnv+"="+strconv.Itoa(len(cmd.ExtraFiles)))
	cmd.ExtraFiles = append(append(append([]*os.File{}, cmd.ExtraFiles...), cfgR, stW), l.after...)
	intoCgroup := false
	if dir, ok := l.cg.Dirs()["unified"]; ok {
		if fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			defer unix.Close(fd)
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
			intoCgroup = true
		}
	}
	if err := cmd.Start(); err != nil {
		return fail("spawn helper", err)
	}
	c.Add(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	cfgR.Close()
	stW.Close()
	if !intoCgroup {
		// It blocks reading its config: account it before it runs.
		if err := l.cg.Add(cmd.Process.Pid); err != nil {
			return fail("cgroup add", err)
		}
	}
	l.markNow("spawn")
	// Marked before the write: once written, the helper's "config" mark
	// may come first.
	l.markNow(l.sendMark)
	if err := json.NewEncoder(cfgW).Encode(l.config); err != nil {
		return fail("send config", err)
	}
	// Phase marks, then EOF (the helper exec'd: the pipe is
	// close-on-exec) or an error report.
	marks, ready, err := initwire.ReadReports(stR)
	if err != nil {
		return launched{}, fmt.Errorf("%s %s: %w", l.what, l.id, err)
	}
	return launched{marks: marks, ready: ready, cfgW: cfgW}, nil
}

// prepareRoot mounts, as real root in the daemon's namespaces, the
// overlay (on dir: a tmpfs of size bytes with the upper and work dirs,
// the overlay on dir/merged) and the binds of a root that a helper in a
// user namespace cannot build itself (overlayfs refuses lower layers with
// locked submounts there, and root inside can neither create bind
// targets in host-root-owned directories nor, maybe, reach the sources);
// the helper binds its copy. rootUID owns the upper's root.
func prepareRoot(dir, lower string, size int64, rootUID int, binds []Bind, c *cleanup.Cleanup) error {
	if err := sandboxinit.MountOverlay(dir, lower, size, rootUID); err != nil {
		return err
	}
	c.Add(func() { sandboxinit.UnmountOverlay(dir) })
	return sandboxinit.BindAll(filepath.Join(dir, "merged"), binds)
}
