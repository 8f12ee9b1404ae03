package runtimes_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// instance is an agent process started the way the no-sandbox baseline
// starts one: the control socket on fd 3, nothing else inherited.
type instance struct {
	t      *testing.T
	cmd    *exec.Cmd
	raw    net.Conn // daemon end of the control channel
	conn   *agent.Conn
	stdout bytes.Buffer // the instance's real fds 1 and 2: must stay empty
	stderr bytes.Buffer
	waited chan struct{}
	err    error
}

func startArgv(t *testing.T, argv []string, env ...string) *instance {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	daemonEnd := os.NewFile(uintptr(fds[0]), "control-daemon")
	agentEnd := os.NewFile(uintptr(fds[1]), "control-agent")
	raw, err := net.FileConn(daemonEnd)
	daemonEnd.Close()
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{t: t, raw: raw, conn: agent.NewConn(raw), waited: make(chan struct{})}
	in.cmd = exec.Command(argv[0], argv[1:]...)
	in.cmd.Env = append([]string{"PATH=/usr/bin:/bin", "CATALYZER_CONTROL_FD=3"}, env...)
	in.cmd.ExtraFiles = []*os.File{agentEnd}
	in.cmd.Stdout = &in.stdout
	in.cmd.Stderr = &in.stderr
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	agentEnd.Close()
	go func() { in.err = in.cmd.Wait(); close(in.waited) }()
	t.Cleanup(func() {
		raw.Close()
		select {
		case <-in.waited:
		case <-time.After(10 * time.Second):
			in.cmd.Process.Kill()
			<-in.waited
		}
	})
	return in
}

// exit closes the control channel and returns the exit code.
func (in *instance) exit() int {
	in.t.Helper()
	in.raw.Close()
	select {
	case <-in.waited:
	case <-time.After(10 * time.Second):
		in.cmd.Process.Kill()
		<-in.waited
		in.t.Fatalf("agent did not exit on EOF")
	}
	var ee *exec.ExitError
	if errors.As(in.err, &ee) {
		return ee.ExitCode()
	}
	if in.err != nil {
		in.t.Fatalf("wait: %v", in.err)
	}
	return 0
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func needFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		testutil.Missing(t, "%s not found (%v): runtime not installed on this machine (scripts/install-deps.sh)", path, err)
	}
}

// interpreted starts the agent of runtime rt for code in codeDir.
func interpreted(t *testing.T, rt, codeDir string) *instance {
	t.Helper()
	r, err := runtimes.Lookup(rt)
	if err != nil {
		t.Fatal(err)
	}
	switch rt {
	case "python":
		needFile(t, runtimes.Python)
	case "node":
		needFile(t, runtimes.Node)
	}
	agentDir := t.TempDir()
	if err := runtimes.InstallAgents(agentDir); err != nil {
		t.Fatal(err)
	}
	return startArgv(t, r.Command(codeDir, agentDir, "main.handler"))
}

// writeCode writes files into a fresh code directory.
func writeCode(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func repoPath(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
