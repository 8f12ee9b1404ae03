package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
	"github.com/catalyzer/catalyzer/internal/boot"
)

// runBaseline boots the function n times in baseline b, each a fresh
// process running the same agent and handler as an instance, and times
// start-to-entry and start-to-response exactly as the daemon does.
func runBaseline(ctx context.Context, b, runtime, handler, codeDir string, event []byte, n int) (BaselineResult, error) {
	var wrap []string
	switch b {
	case "direct":
	case "bwrap":
		path, err := exec.LookPath("bwrap")
		if err != nil {
			return BaselineResult{}, fmt.Errorf("bwrap is not installed (apt-get install bubblewrap)")
		}
		// bubblewrap's usual container: read-only host root, own /dev,
		// /proc and /tmp, every namespace unshared.
		wrap = []string{path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
			"--unshare-all", "--die-with-parent", "--chdir", codeDir}
	default:
		return BaselineResult{}, fmt.Errorf("unknown baseline %q (want direct or bwrap)", b)
	}
	rt, err := runtimes.Lookup(runtime)
	if err != nil {
		return BaselineResult{}, err
	}
	agentDir, err := os.MkdirTemp("", "catalyzer-bench-agents-")
	if err != nil {
		return BaselineResult{}, err
	}
	defer os.RemoveAll(agentDir)
	if err := runtimes.InstallAgents(agentDir); err != nil {
		return BaselineResult{}, err
	}
	f := boot.Function{Name: "baseline", Runtime: runtime, Handler: handler, CodeDir: codeDir, TimeoutMs: 30000}
	if wrap != nil {
		// The code and agents may live under /tmp, which bwrap replaces.
		wrap = append(wrap, "--ro-bind", codeDir, codeDir, "--ro-bind", agentDir, agentDir, "--")
	}
	argv := append(wrap, rt.Command(codeDir, agentDir, handler)...)
	var entry, total []int64
	for i := 0; i < n; i++ {
		e, t, err := bootOnce(ctx, argv, f, event)
		if err != nil {
			return BaselineResult{}, fmt.Errorf("%s: %w", b, err)
		}
		entry, total = append(entry, e), append(total, t)
	}
	return BaselineResult{Entry: Summarize(entry), Total: Summarize(total)}, nil
}

// bootOnce fork+execs argv with the control channel on fd 3, inits and
// invokes once, and returns start-to-entry and start-to-response in µs.
func bootOnce(ctx context.Context, argv []string, f boot.Function, event []byte) (int64, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := agent.Monotonic()
	parent, child, err := boot.ControlPair()
	if err != nil {
		return 0, 0, err
	}
	defer parent.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = f.CodeDir
	cmd.Env = boot.InstanceEnv(f)
	cmd.ExtraFiles = []*os.File{child}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		child.Close()
		return 0, 0, err
	}
	child.Close()
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	conn := agent.NewConn(parent)
	if _, err := conn.Init(ctx, boot.InitMsg(f, f.CodeDir)); err != nil {
		return 0, 0, fmt.Errorf("init: %w", err)
	}
	if len(event) == 0 {
		event = []byte("{}")
	}
	res, err := conn.Invoke(ctx, agent.Invoke{ID: "1", Event: event})
	if err != nil {
		return 0, 0, fmt.Errorf("invoke: %w", err)
	}
	end := agent.Monotonic()
	return (res.EntryNS - start) / 1000, (end - start) / 1000, nil
}
