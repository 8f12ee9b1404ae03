package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
	"github.com/catalyzer/catalyzer/internal/boot"
)

// runBaseline boots the function n times in baseline b, each a fresh
// process running the same agent and handler as an instance, and times
// start-to-entry and start-to-response exactly as the daemon does.
func runBaseline(ctx context.Context, b, runtime, handler, codeDir string, event []byte, n int) (BaselineResult, error) {
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
	inner := rt.Command(codeDir, agentDir, handler)
	// argv(i) is the command of boot i; after(i) cleans up after it.
	argv := func(int) []string { return inner }
	after := func(int) {}
	switch b {
	case "direct":
	case "bwrap":
		path, err := exec.LookPath("bwrap")
		if err != nil {
			return BaselineResult{}, fmt.Errorf("bwrap is not installed (apt-get install bubblewrap)")
		}
		// bubblewrap's usual container: read-only host root, own /dev,
		// /proc and /tmp (the code and agents may live under /tmp: bound
		// again), every namespace unshared.
		wrapped := append([]string{path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
			"--unshare-all", "--die-with-parent", "--chdir", codeDir,
			"--ro-bind", codeDir, codeDir, "--ro-bind", agentDir, agentDir, "--"}, inner...)
		argv = func(int) []string { return wrapped }
	case "runc":
		bundle, cleanup, err := runcBundle(inner, codeDir)
		if err != nil {
			return BaselineResult{}, err
		}
		defer cleanup()
		runc, _ := exec.LookPath("runc")
		id := func(i int) string { return fmt.Sprintf("catalyzer-bench-%d-%d", os.Getpid(), i) }
		argv = func(i int) []string {
			return []string{runc, "run", "--bundle", bundle, "--preserve-fds", "1", id(i)}
		}
		after = func(i int) { exec.Command(runc, "delete", "--force", id(i)).Run() }
	default:
		return BaselineResult{}, fmt.Errorf("unknown baseline %q (want direct, bwrap or runc)", b)
	}
	f := boot.Function{Name: "baseline", Runtime: runtime, Handler: handler, CodeDir: codeDir, TimeoutMs: 30000}
	var entry, total []int64
	for i := 0; i < n; i++ {
		e, t, err := bootOnce(ctx, argv(i), f, event)
		after(i)
		if err != nil {
			return BaselineResult{}, fmt.Errorf("%s: %w", b, err)
		}
		entry, total = append(entry, e), append(total, t)
	}
	return BaselineResult{Entry: Summarize(entry), Total: Summarize(total), EntrySamples: entry, TotalSamples: total}, nil
}

// runcBundle makes an OCI bundle for runc's baseline: runc's default spec
// (namespaces, capabilities, masked paths; its cgroup mount left out) over
// a read-only recursive bind of the host's "/" (runc cannot pivot into "/"
// itself), running argv in codeDir. cleanup unmounts and removes it.
func runcBundle(argv []string, codeDir string) (string, func(), error) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		return "", nil, fmt.Errorf("runc is not installed (apt-get install runc)")
	}
	bundle, err := os.MkdirTemp("", "catalyzer-bench-runc-")
	if err != nil {
		return "", nil, err
	}
	rootfs := filepath.Join(bundle, "rootfs")
	cleanup := func() {
		unix.Unmount(rootfs, unix.MNT_DETACH)
		os.RemoveAll(bundle)
	}
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		cleanup()
		return "", nil, err
	}
	if out, err := exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("runc spec: %v: %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		cleanup()
		return "", nil, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		cleanup()
		return "", nil, err
	}
	spec.Root = &specs.Root{Path: "rootfs", Readonly: true}
	spec.Process.Terminal = false
	spec.Process.Args = argv
	spec.Process.Cwd = codeDir
	spec.Process.Env = boot.InstanceEnv(boot.Function{Name: "baseline"})
	mounts := spec.Mounts[:0]
	for _, m := range spec.Mounts {
		if m.Destination != "/sys/fs/cgroup" {
			mounts = append(mounts, m)
		}
	}
	spec.Mounts = mounts
	if b, err = json.Marshal(&spec); err == nil {
		err = os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644)
	}
	if err == nil {
		err = unix.Mount("/", rootfs, "", unix.MS_BIND|unix.MS_REC, "")
	}
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("runc bundle: %w", err)
	}
	return bundle, cleanup, nil
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
