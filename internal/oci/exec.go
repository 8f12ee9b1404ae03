package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/cleanup"
	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// ExecOpts are exec's options, as runc's.
type ExecOpts struct {
	Process               *specs.Process // the process to run (runc's --process FILE)
	PidFile               string
	ConsoleSocket         string
	PreserveFDs           int
	Stdin, Stdout, Stderr *os.File
}

// ReadProcess reads a process JSON file (exec --process).
func ReadProcess(path string) (*specs.Process, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("process %s: %w", path, err)
	}
	var p specs.Process
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("process %s: %w: %w", path, err, errdefs.ErrInvalid)
	}
	return &p, nil
}

// Exec starts a process in the running (or created) container c: in its
// namespaces and cgroup, with the container's seccomp profile, as
// o.Process says. It returns once the process has exec'd; the process
// is the caller's child.
func (c *Container) Exec(o ExecOpts) (*os.Process, error) {
	b, prog, err := c.checkExec(o)
	if err != nil {
		return nil, err
	}
	var cl cleanup.Cleanup
	defer cl.Clean()
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer cfgR.Close()
	defer cfgW.Close()
	parent, child, err := socketPair("sync", "sync-exec")
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	defer child.Close()
	cfg := initConfig{ID: c.rec.ID, Spec: &specs.Spec{Process: o.Process}, Seccomp: prog, PreserveFDs: o.PreserveFDs,
		Exec: true, MountNSFD: -1, ConsoleFD: -1}
	cmd, intoCgroup, err := c.startExec(o, b, &cfg, cfgR, child)
	if err != nil {
		return nil, err
	}
	cl.Add(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	child.Close()
	cfgR.Close()
	if !intoCgroup && c.cg != nil {
		if err := c.cg.Add(cmd.Process.Pid); err != nil {
			return nil, fmt.Errorf("container %s: exec: %w", c.rec.ID, err)
		}
	}
	if err := json.NewEncoder(cfgW).Encode(cfg); err != nil {
		return nil, fmt.Errorf("container %s: exec: send config: %w", c.rec.ID, err)
	}
	cfgW.Close()
	if err := c.awaitExec(parent); err != nil {
		return nil, err
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, cmd.Process.Pid); err != nil {
			return nil, fmt.Errorf("container %s: exec: pid file: %w", c.rec.ID, err)
		}
	}
	cl.Release()
	return cmd.Process, nil
}

// checkExec refuses an exec c cannot take (its state, o's process and
// console, a user namespace) before anything is built, and returns c's
// bundle and its compiled seccomp profile.
func (c *Container) checkExec(o ExecOpts) (*Bundle, []unix.SockFilter, error) {
	switch st := c.Status(); st {
	case Created, Running:
	default:
		return nil, nil, refuse(c.state(), "exec in")
	}
	p := o.Process
	if p == nil || len(p.Args) == 0 || !filepath.IsAbs(p.Cwd) {
		return nil, nil, invalid("container %s: exec: process needs args and an absolute cwd", c.rec.ID)
	}
	if p.Terminal != (o.ConsoleSocket != "") {
		return nil, nil, invalid("container %s: exec: a terminal needs --console-socket, and only it", c.rec.ID)
	}
	b, err := LoadBundle(c.rec.Bundle)
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: exec: %w", c.rec.ID, err)
	}
	if hasNS(b.Spec, specs.UserNamespace) {
		// setns(CLONE_NEWUSER) needs a single-threaded caller.
		return nil, nil, fmt.Errorf("container %s: exec into a user namespace: %w", c.rec.ID, errdefs.ErrNotSupported)
	}
	prog, err := compileSeccomp(c.rec.ID, b.Spec)
	if err != nil {
		return nil, nil, err
	}
	return b, prog, nil
}

// startExec starts the exec'd process (this binary re-executed) in c's
// namespaces, and in its cgroup when the kernel can clone it there
// (intoCgroup; if not, the caller adds it). Its config pipe and sync
// socket are cfgR and child; cfg gets the fd numbers of the console and
// of the mount namespace it joins itself. The fds opened for the start
// are closed once it is done.
func (c *Container) startExec(o ExecOpts, b *Bundle, cfg *initConfig, cfgR, child *os.File) (cmd *exec.Cmd, intoCgroup bool, err error) {
	extra := append(preservedFiles(o.PreserveFDs), cfgR, child)
	if o.ConsoleSocket != "" {
		con, err := dialConsole(o.ConsoleSocket)
		if err != nil {
			return nil, false, fmt.Errorf("container %s: console socket: %w", c.rec.ID, err)
		}
		defer con.Close()
		cfg.ConsoleFD = 3 + len(extra)
		extra = append(extra, con)
	}
	cmd = reexecCmd("catalyzer-runc-exec", o.PreserveFDs, extra, o.Stdin, o.Stdout, o.Stderr)
	var join []specs.LinuxNamespace
	for _, ns := range b.Spec.Linux.Namespaces {
		join = append(join, specs.LinuxNamespace{Type: ns.Type, Path: fmt.Sprintf("/proc/%d/ns/%s", c.rec.Pid, nsProcName[ns.Type])})
	}
	if c.cg != nil {
		if fd := cloneIntoCgroup(cmd.SysProcAttr, c.cg.Dirs()); fd >= 0 {
			defer unix.Close(fd)
			intoCgroup = true
		}
	}
	join, mnt, err := splitMountNS(join)
	if err != nil {
		return nil, false, fmt.Errorf("container %s: exec: %w", c.rec.ID, err)
	}
	if mnt != nil {
		defer mnt.Close()
		cfg.MountNSFD = 3 + len(cmd.ExtraFiles)
		cmd.ExtraFiles = append(cmd.ExtraFiles, mnt)
	}
	if err := startJoined(cmd, join); err != nil {
		return nil, false, fmt.Errorf("container %s: exec: %w", c.rec.ID, err)
	}
	return cmd, intoCgroup, nil
}

// awaitExec waits on the sync socket until the exec'd process has
// exec'd: EOF (the socket is close-on-exec), or a line with its error.
func (c *Container) awaitExec(parent *os.File) error {
	line, err := io.ReadAll(parent)
	if err != nil {
		return fmt.Errorf("container %s: exec: %w", c.rec.ID, err)
	}
	if len(line) > 0 {
		var m syncMsg
		if json.Unmarshal(line, &m) == nil && m.Type == msgError {
			return fmt.Errorf("container %s: exec: %s", c.rec.ID, m.Error)
		}
		return fmt.Errorf("container %s: exec: unexpected %q", c.rec.ID, line)
	}
	return nil
}

// runExec is the exec'd process's side, already in the container's
// namespaces and cgroup.
func runExec(cfg *initConfig) error {
	p := cfg.Spec.Process
	if cfg.ConsoleFD >= 0 {
		if err := setupConsole(os.NewFile(uintptr(cfg.ConsoleFD), "console-socket"), p.ConsoleSize); err != nil {
			return initErr("console", err, "pty")
		}
	}
	if p.Env == nil {
		p.Env = []string{}
	}
	argv0, err := prepareProcess(p, cfg.Seccomp, cfg.PreserveFDs)
	if err != nil {
		return err
	}
	err = execProcess(p, argv0, cfg.Seccomp)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	}
	return err
}
