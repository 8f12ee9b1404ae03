package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// The OCI runtime under containerd: a private containerd (own root,
// state and socket, CRI off) runs containers through `ctr run
// --runc-binary catalyzer-runc` on a busybox root.

// containerdEnv is one private containerd and what ctr needs to use it.
type containerdEnv struct {
	t        *testing.T
	dir      string
	sock     string
	ns       string // containerd namespace: the cgroup parent of its containers
	runcRoot string
	runtime  string // the --runc-binary
	rootfs   string
}

func startContainerd(t *testing.T) *containerdEnv {
	t.Helper()
	testutil.RequiresRoot(t)
	for _, bin := range []string{"containerd", "ctr"} {
		if _, err := exec.LookPath(bin); err != nil {
			testutil.Missing(t, "%s not installed (scripts/install-deps.sh installs Debian's containerd)", bin)
		}
	}
	busybox := "/bin/busybox"
	if out, err := exec.Command("file", "-L", busybox).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("statically linked")) {
		if _, err := os.Stat(busybox); err != nil {
			testutil.Missing(t, "no static busybox at %s (install busybox-static)", busybox)
		}
	}
	dir := t.TempDir()
	e := &containerdEnv{t: t, dir: dir, sock: filepath.Join(dir, "containerd.sock"),
		ns: fmt.Sprintf("catalyzer-test-%d", os.Getpid()), runcRoot: filepath.Join(dir, "runc-root"),
		runtime: filepath.Join(dir, "catalyzer-runc"), rootfs: filepath.Join(dir, "rootfs")}
	if err := os.Symlink(binary, e.runtime); err != nil {
		t.Fatal(err)
	}
	buildBusyboxRoot(t, busybox, e.rootfs)
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), e.sock, e.sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		// The runtime, like runc, leaves the parent of a container's
		// cgroupsPath ("/<namespace>/<id>"): the test's own to remove.
		if err := cgroup.RemoveParent(e.ns); err != nil {
			t.Errorf("remove cgroup parent %s: %v", e.ns, err)
		}
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("containerd log:\n%s", b)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := e.ctr("version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("containerd did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return e
}

// buildBusyboxRoot makes a root file system of busybox and its applets.
func buildBusyboxRoot(t *testing.T, busybox, root string) {
	t.Helper()
	bin := filepath.Join(root, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			_ = os.Symlink("busybox", filepath.Join(bin, applet))
		}
	}
	for _, d := range []string{"proc", "dev", "sys", "tmp", "etc"} {
		_ = os.MkdirAll(filepath.Join(root, d), 0o755)
	}
}

// ctr runs ctr against the private containerd; its combined output.
func (e *containerdEnv) ctr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"-a", e.sock, "-n", e.ns}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Logf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return string(out), err
}

// run is `ctr run` on our runtime with the busybox root.
func (e *containerdEnv) run(flags []string, id string, argv ...string) (string, error) {
	// ctr's --rootfs is a switch: the directory is the first argument.
	args := append(append([]string{"run", "--runc-binary", e.runtime, "--runc-root", e.runcRoot}, flags...), "--rootfs", e.rootfs, id)
	return e.ctr(append(args, argv...)...)
}

func exitCodeOf(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

// checkNothingLeft: no state dir, no cgroup and no process of the test's
// containerd namespace, no mount under the test's dir.
func (e *containerdEnv) checkNothingLeft() {
	t := e.t
	t.Helper()
	// The shim's --root is <runc-root>/<namespace>: one dir per container.
	if ents, _ := os.ReadDir(filepath.Join(e.runcRoot, e.ns)); len(ents) > 0 {
		t.Errorf("runtime state left under %s: %v", e.runcRoot, ents)
	}
	left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", e.ns, "*"))
	more, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", e.ns, "*"))
	for _, d := range append(left, more...) {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			t.Errorf("cgroup left: %s", d)
		}
	}
	pids, _ := procfs.PIDs()
	for _, pid := range pids {
		cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err == nil && bytes.Contains(cg, []byte("/"+e.ns+"/")) {
			t.Errorf("process %d left in the containers' cgroups:\n%s", pid, cg)
		}
	}
	if m := testutil.MountsUnder(t, e.dir); len(m) > 0 {
		t.Errorf("mounts left under %s: %v", e.dir, m)
	}
}

func TestOCIContainerdOneShot(t *testing.T) {
	e := startContainerd(t)
	out, err := e.run([]string{"--rm"}, "oneshot", "/bin/sh", "-c", "echo hello from $(hostname); echo pid $$; grep NoNewPrivs /proc/self/status; exit 3")
	if code := exitCodeOf(err); code != 3 {
		t.Fatalf("exit code %d (%v), want 3; output:\n%s", code, err, out)
	}
	if !strings.Contains(out, "hello from") {
		t.Errorf("output %q lacks the container's echo", out)
	}
	// PID 1 of a pid namespace of its own, no_new_privs as ctr's spec asks.
	if !strings.Contains(out, "pid 1\n") || !strings.Contains(out, "NoNewPrivs:\t1") {
		t.Errorf("want pid 1 and NoNewPrivs 1 in %q", out)
	}
	out, err = e.run([]string{"--rm"}, "oneshot-true", "/bin/true")
	if err != nil {
		t.Fatalf("true: %v\n%s", err, out)
	}
	e.checkNothingLeft()
}

func TestOCIContainerdDetached(t *testing.T) {
	e := startContainerd(t)
	id := "detached"
	if out, err := e.run([]string{"-d"}, id, "/bin/sleep", "1000"); err != nil {
		t.Fatalf("run -d: %v\n%s", err, out)
	}
	out, err := e.ctr("task", "exec", "--exec-id", "e1", id, "/bin/sh", "-c", "echo in-exec $(cat /proc/1/comm); exit 5")
	if code := exitCodeOf(err); code != 5 || !strings.Contains(out, "in-exec sleep") {
		t.Errorf("task exec: code %d, output %q; want 5 and 'in-exec sleep'", code, out)
	}
	if out, err := e.ctr("task", "ps", id); err != nil || len(strings.Split(strings.TrimSpace(out), "\n")) != 2 {
		t.Errorf("task ps: %v\n%s", err, out)
	}
	if out, err := e.ctr("task", "pause", id); err != nil {
		t.Errorf("pause: %v\n%s", err, out)
	}
	if out, _ := e.ctr("task", "ls"); !strings.Contains(out, "PAUSED") {
		t.Errorf("task ls after pause:\n%s", out)
	}
	if out, err := e.ctr("task", "resume", id); err != nil {
		t.Errorf("resume: %v\n%s", err, out)
	}
	if out, _ := e.ctr("task", "ls"); !strings.Contains(out, "RUNNING") {
		t.Errorf("task ls after resume:\n%s", out)
	}
	if out, err := e.ctr("task", "kill", "-s", "KILL", id); err != nil {
		t.Fatalf("kill: %v\n%s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := e.ctr("task", "ls")
		if strings.Contains(out, "STOPPED") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not stopped after kill:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, err := e.ctr("task", "delete", id); err != nil {
		t.Fatalf("task delete: %v\n%s", err, out)
	}
	if out, err := e.ctr("container", "delete", id); err != nil {
		t.Fatalf("container delete: %v\n%s", err, out)
	}
	e.checkNothingLeft()
}
