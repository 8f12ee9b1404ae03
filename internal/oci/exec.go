package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/atomicfile"
	"github.com/catalyzer/catalyzer/internal/cleanup"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox/seccomp"
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
	switch st := c.Status(); st {
	case Created, Running:
	default:
		return nil, refuse(c.state(), "exec in")
	}
	p := o.Process
	if p == nil || len(p.Args) == 0 || !filepath.IsAbs(p.Cwd) {
		return nil, invalid("container %s: exec: process needs args and an absolute cwd", c.rec.ID)
	}
	if p.Terminal != (o.ConsoleSocket != "") {
		return nil, invalid("container %s: exec: a terminal needs --console-socket, and only it", c.rec.ID)
	}
	b, err := LoadBundle(c.rec.Bundle)
	if err != nil {
		return nil, fmt.Errorf("container %s: exec: %w", c.rec.ID, err)
	}
	if hasNS(b.Spec, specs.UserNamespace) {
		// setns(CLONE_NEWUSER) needs a single-threaded caller.
		return nil, fmt.Errorf("container %s: exec into a user namespace: %w", c.rec.ID, errdefs.ErrNotSupported)
	}
	var prog []unix.SockFilter
	if b.Spec.Linux.Seccomp != nil {
		if prog, err = seccomp.Compile(b.Spec.Linux.Seccomp, seccomp.Options{}); err != nil {
			return nil, fmt.Errorf("container %s: seccomp: %w", c.rec.ID, err)
		}
	}
	var cl cleanup.Cleanup
	defer cl.Clean()
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer cfgR.Close()
	defer cfgW.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	parent, child := os.NewFile(uintptr(fds[0]), "sync"), os.NewFile(uintptr(fds[1]), "sync-exec")
	defer parent.Close()
	defer child.Close()
	extra := make([]*os.File, 0, o.PreserveFDs+3)
	for i := 0; i < o.PreserveFDs; i++ {
		extra = append(extra, os.NewFile(uintptr(3+i), "preserved"))
	}
	extra = append(extra, cfgR, child)
	cfg := initConfig{ID: c.rec.ID, Spec: &specs.Spec{Process: p}, Seccomp: prog, PreserveFDs: o.PreserveFDs,
		Exec: true, MountNSFD: -1, ConsoleFD: -1}
	if o.ConsoleSocket != "" {
		con, err := dialConsole(o.ConsoleSocket)
		if err != nil {
			return nil, fmt.Errorf("container %s: console socket: %w", c.rec.ID, err)
		}
		defer con.Close()
		cfg.ConsoleFD = 3 + len(extra)
		extra = append(extra, con)
	}
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{"catalyzer-runc-exec"},
		Env:         []string{initEnv + "=" + strconv.Itoa(o.PreserveFDs)},
		ExtraFiles:  extra,
		Stdin:       orFile(o.Stdin, os.Stdin),
		Stdout:      orFile(o.Stdout, os.Stdout),
		Stderr:      orFile(o.Stderr, os.Stderr),
		SysProcAttr: &syscall.SysProcAttr{},
	}
	var join []specs.LinuxNamespace
	for _, ns := range b.Spec.Linux.Namespaces {
		join = append(join, specs.LinuxNamespace{Type: ns.Type, Path: fmt.Sprintf("/proc/%d/ns/%s", c.rec.Pid, nsProcName[ns.Type])})
	}
	intoCgroup := false
	if c.cg != nil {
		if dir, ok := c.cg.Dirs()["unified"]; ok {
			if fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
				defer unix.Close(fd)
				cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
				intoCgroup = true
			}
		}
	}
	join, mnt, err := splitMountNS(join)
	if err != nil {
		return nil, fmt.Errorf("container %s: exec: %w", c.rec.ID, err)
	}
	if mnt != nil {
		defer mnt.Close()
		cfg.MountNSFD = 3 + len(cmd.ExtraFiles)
		cmd.ExtraFiles = append(cmd.ExtraFiles, mnt)
	}
	if err := startJoined(cmd, join); err != nil {
		return nil, fmt.Errorf("container %s: exec: %w", c.rec.ID, err)
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
	// EOF: it exec'd (the socket is close-on-exec); a line: its error.
	line, err := io.ReadAll(parent)
	if err != nil {
		return nil, fmt.Errorf("container %s: exec: %w", c.rec.ID, err)
	}
	if len(line) > 0 {
		var m syncMsg
		if json.Unmarshal(line, &m) == nil && m.Type == msgError {
			return nil, fmt.Errorf("container %s: exec: %s", c.rec.ID, m.Error)
		}
		return nil, fmt.Errorf("container %s: exec: unexpected %q", c.rec.ID, line)
	}
	if o.PidFile != "" {
		if err := atomicfile.WriteFile(o.PidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			return nil, fmt.Errorf("container %s: exec: pid file: %w", c.rec.ID, err)
		}
	}
	cl.Release()
	return cmd.Process, nil
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
