package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catalyzer/catalyzer/internal/image"
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
	for _, d := range testutil.CgroupDirs(filepath.Join(e.ns, "*")) {
		t.Errorf("cgroup left: %s", d)
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

// importBusybox imports the busybox root as an image (an OCI layout
// tarball made here: no registry), for what ctr does only with images:
// `ctr container checkpoint` and `restore`.
func (e *containerdEnv) importBusybox(ref string) {
	t := e.t
	t.Helper()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	err := filepath.Walk(e.rootfs, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == e.rootfs {
			return err
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name, _ = filepath.Rel(e.rootfs, p)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(data)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	digest := func(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }
	desc := func(mt string, b []byte) map[string]any {
		return map[string]any{"mediaType": mt, "digest": digest(b), "size": len(b)}
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cfg := mustJSON(map[string]any{"architecture": runtime.GOARCH, "os": "linux", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest(layer.Bytes())}}})
	man := mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": desc("application/vnd.oci.image.config.v1+json", cfg),
		"layers": []any{desc("application/vnd.oci.image.layer.v1.tar", layer.Bytes())}})
	md := desc("application/vnd.oci.image.manifest.v1+json", man)
	md["annotations"] = map[string]string{"io.containerd.image.name": ref}
	idx := mustJSON(map[string]any{"schemaVersion": 2, "manifests": []any{md}})
	path := filepath.Join(e.dir, "busybox-image.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	ow := tar.NewWriter(f)
	add := func(name string, data []byte) {
		if err := ow.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := ow.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add("index.json", idx)
	for _, b := range [][]byte{layer.Bytes(), cfg, man} {
		add("blobs/sha256/"+digest(b)[len("sha256:"):], b)
	}
	if err := ow.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := e.ctr("images", "import", path); err != nil {
		t.Fatalf("import busybox image: %v\n%s", err, out)
	}
}

// waitTask waits until ctr task ls shows id in status st.
func (e *containerdEnv) waitTask(id, st string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := e.ctr("task", "ls")
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == id && f[2] == st {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s not %s:\n%s", id, st, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// counterLines are the n=N lines of a counter's output, in order.
func counterLines(out string) []int {
	var ns []int
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "n="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				ns = append(ns, n)
			}
		}
	}
	return ns
}

// lockedBuffer is a bytes.Buffer written by a command, read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitCounter waits until out shows a counter at n or more; the last n.
func waitCounter(t *testing.T, out *lockedBuffer, n int) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ns := counterLines(out.String()); len(ns) > 0 && ns[len(ns)-1] >= n {
			return ns[len(ns)-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("counter did not reach %d; output:\n%s", n, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The counter: a busybox sh loop, no child process (read -t waits on
// stdin, a pipe that never gets a byte), so that the image engine takes
// it; its state is in the shell's memory only.
const counterScript = `i=0; while :; do echo n=$i; i=$((i+1)); read -t 0.1 x; done`

func TestOCIContainerdCheckpointRestore(t *testing.T) {
	e := startContainerd(t)
	const img, ckpt = "catalyzer.test/busybox:latest", "catalyzer.test/counter-checkpoint:1"
	e.importBusybox(img)

	// The counter in the foreground of ctr run, its stdin a pipe of ours.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinW.Close()
	var out1 lockedBuffer
	run := exec.Command("ctr", "-a", e.sock, "-n", e.ns, "run", "--runc-binary", e.runtime, "--runc-root", e.runcRoot,
		img, "counter", "/bin/sh", "-c", counterScript)
	run.Stdin, run.Stdout, run.Stderr = stdinR, &out1, &out1
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	stdinR.Close()
	defer func() { _ = run.Process.Kill(); _ = run.Wait() }()
	before := waitCounter(t, &out1, 3)

	// containerd pauses the task, our checkpoint dumps it (left
	// running), containerd resumes it and stores the image.
	if out, err := e.ctr("container", "checkpoint", "--task", "counter", ckpt); err != nil {
		t.Fatalf("checkpoint: %v\n%s", err, out)
	}
	waitCounter(t, &out1, before+3) // it goes on after the dump
	if out, err := e.ctr("task", "kill", "-s", "KILL", "counter"); err != nil {
		t.Fatalf("kill: %v\n%s", err, out)
	}
	_ = run.Wait()
	ns := counterLines(out1.String())
	last := ns[len(ns)-1]
	if out, err := e.ctr("container", "delete", "counter"); err != nil {
		t.Fatalf("container delete: %v\n%s", err, out)
	}

	// containerd restores it into a new container (our restore verb,
	// with the shim's arguments) and its output continues from the
	// checkpoint's count, on the new task's pipes.
	if out, err := e.ctr("container", "restore", "--live", "restored", ckpt); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	e.waitTask("restored", "RUNNING")
	var out2 lockedBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	attach := exec.CommandContext(ctx, "ctr", "-a", e.sock, "-n", e.ns, "task", "attach", "restored")
	attach.Stdout, attach.Stderr = &out2, &out2
	if err := attach.Start(); err != nil {
		t.Fatal(err)
	}
	got := counterLines(out2.String())
	for deadline := time.Now().Add(15 * time.Second); len(got) < 3 && time.Now().Before(deadline); got = counterLines(out2.String()) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	_ = attach.Wait()
	if len(got) < 3 {
		t.Fatalf("restored counter printed %v; want it to go on; output:\n%s", got, out2.String())
	}
	// It was dumped after it printed "before" and before "last": it
	// goes on from there, not from 0.
	if got[0] <= before || got[0] > last+1 || got[1] != got[0]+1 {
		t.Errorf("restored counter starts %v; checkpointed between n=%d and n=%d", got[:3], before, last)
	}
	// The restored process is the container's init for the runtime too.
	state, err := exec.Command(e.runtime, "--root", filepath.Join(e.runcRoot, e.ns), "state", "restored").Output()
	if err != nil || !strings.Contains(string(state), `"status": "running"`) {
		t.Errorf("runtime state of the restored container: %v\n%s", err, state)
	}
	if out, err := e.ctr("task", "kill", "-s", "KILL", "restored"); err != nil {
		t.Fatalf("kill restored: %v\n%s", err, out)
	}
	e.waitTask("restored", "STOPPED")
	if out, err := e.ctr("task", "delete", "restored"); err != nil {
		t.Fatalf("task delete: %v\n%s", err, out)
	}
	if out, err := e.ctr("container", "delete", "restored"); err != nil {
		t.Fatalf("container delete: %v\n%s", err, out)
	}
	_, _ = e.ctr("images", "rm", ckpt, img)
	e.checkNothingLeft()
}

// A process the image engine cannot restore faithfully (here: one with
// a child) is refused by name; the container runs on as it was and no
// image is left.
func TestOCIContainerdCheckpointRefused(t *testing.T) {
	e := startContainerd(t)
	id := "parent"
	if out, err := e.run([]string{"-d"}, id, "/bin/sh", "-c", "sleep 1000 & wait"); err != nil {
		t.Fatalf("run -d: %v\n%s", err, out)
	}
	imgDir := filepath.Join(e.dir, "refused-image")
	out, err := e.ctr("task", "checkpoint", "--image-path", imgDir, "--work-path", filepath.Join(e.dir, "work"), id)
	if err == nil || !strings.Contains(out, "child") {
		t.Errorf("checkpoint of a process with a child: %v, want a refusal naming the child:\n%s", err, out)
	}
	if ents, _ := os.ReadDir(imgDir); len(ents) > 0 {
		t.Errorf("refused checkpoint left %v in %s", ents, imgDir)
	}
	e.waitTask(id, "RUNNING")
	if out, err := e.ctr("task", "kill", "-a", "-s", "KILL", id); err != nil {
		t.Fatalf("kill: %v\n%s", err, out)
	}
	e.waitTask(id, "STOPPED")
	if out, err := e.ctr("task", "delete", id); err != nil {
		t.Fatalf("task delete: %v\n%s", err, out)
	}
	if out, err := e.ctr("container", "delete", id); err != nil {
		t.Fatalf("container delete: %v\n%s", err, out)
	}
	e.checkNothingLeft()
}

// counterRun is `ctr run` of our runtime in the foreground, its stdin a
// pipe of ours that never gets a byte (the counter's read -t waits on
// it), its output in a buffer.
type counterRun struct {
	cmd     *exec.Cmd
	stdin   *os.File
	out     lockedBuffer
	deleted bool
}

func (e *containerdEnv) startCounter(flags []string, id string, argv ...string) *counterRun {
	t := e.t
	t.Helper()
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r := &counterRun{stdin: stdinW}
	args := append(append([]string{"-a", e.sock, "-n", e.ns, "run", "--runc-binary", e.runtime, "--runc-root", e.runcRoot},
		flags...), "--rootfs", e.rootfs, id)
	r.cmd = exec.Command("ctr", append(args, argv...)...)
	r.cmd.Stdin, r.cmd.Stdout, r.cmd.Stderr = stdinR, &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdinR.Close()
	t.Cleanup(func() {
		if !r.deleted { // a failed test: its container must not outlive it
			_, _ = e.ctr("task", "kill", "-s", "KILL", id)
			_ = r.cmd.Wait()
			_, _ = e.ctr("task", "delete", id)
			_, _ = e.ctr("container", "delete", id)
		}
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		stdinW.Close()
	})
	return r
}

// killAndDelete kills a foreground counter's task and deletes its
// container; the exit status ctr run reported.
func (e *containerdEnv) killAndDelete(r *counterRun, id string) error {
	e.t.Helper()
	if out, err := e.ctr("task", "kill", "-s", "KILL", id); err != nil {
		e.t.Fatalf("kill %s: %v\n%s", id, err, out)
	}
	err := r.cmd.Wait()
	r.stdin.Close()
	if out, derr := e.ctr("container", "delete", id); derr != nil {
		e.t.Fatalf("container delete %s: %v\n%s", id, derr, out)
	}
	r.deleted = true
	return err
}

// dev.catalyzer.boot=restore: a container whose process is restored from
// an image at start (here one our checkpoint verb wrote of a counter),
// by annotation on an ordinary ctr run. Bad annotations are refused at
// create with words that say what to fix.
func TestOCIContainerdBootRestoreAnnotation(t *testing.T) {
	e := startContainerd(t)
	c := e.startCounter(nil, "counter", "/bin/sh", "-c", counterScript)
	before := waitCounter(t, &c.out, 3)
	imgDir := filepath.Join(e.dir, "counter-image")
	if out, err := e.ctr("task", "checkpoint", "--image-path", imgDir, "--work-path", filepath.Join(e.dir, "work"), "counter"); err != nil {
		t.Fatalf("checkpoint: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(imgDir, image.ManifestFile)); err != nil {
		ents, _ := os.ReadDir(imgDir)
		t.Fatalf("no image manifest in %s (%v): %v", imgDir, ents, err)
	}
	_ = e.killAndDelete(c, "counter")
	ns := counterLines(c.out.String())
	last := ns[len(ns)-1]

	// Refused at create: a relative image, a missing one, a directory
	// that is no image. Nothing is left of them.
	for _, bad := range []struct{ image, want string }{
		{"counter-image", "absolute"},
		{filepath.Join(e.dir, "missing"), "missing"},
		{e.rootfs, "manifest"},
	} {
		out, err := e.run([]string{"--rm", "--annotation", "dev.catalyzer.boot=restore", "--annotation", "dev.catalyzer.image=" + bad.image}, "bad", "/bin/true")
		if err == nil || !strings.Contains(out, "dev.catalyzer.image") || !strings.Contains(out, bad.want) {
			t.Errorf("image %q: %v, want a refusal naming the annotation and %q:\n%s", bad.image, err, bad.want, out)
		}
		_, _ = e.ctr("container", "delete", "bad")
	}

	// Twice from the same image: each goes on from the checkpoint.
	for _, id := range []string{"restored1", "restored2"} {
		r := e.startCounter([]string{"--annotation", "dev.catalyzer.boot=restore", "--annotation", "dev.catalyzer.image=" + imgDir}, id, "/bin/false")
		waitCounter(t, &r.out, 0)
		got := counterLines(r.out.String())
		for deadline := time.Now().Add(15 * time.Second); len(got) < 3 && time.Now().Before(deadline); got = counterLines(r.out.String()) {
			time.Sleep(20 * time.Millisecond)
		}
		if len(got) < 3 || got[0] <= before || got[0] > last+1 || got[1] != got[0]+1 {
			t.Errorf("%s: restored counter printed %v; checkpointed between n=%d and n=%d", id, got, before, last)
		}
		state, err := exec.Command(e.runtime, "--root", filepath.Join(e.runcRoot, e.ns), "state", id).Output()
		if err != nil || !strings.Contains(string(state), `"status": "running"`) {
			t.Errorf("runtime state of %s: %v\n%s", id, err, state)
		}
		if err := e.killAndDelete(r, id); exitCodeOf(err) != 137 {
			t.Errorf("%s: ctr run exit %v, want 137 (killed)", id, err)
		}
	}
	e.checkNothingLeft()
}

// dev.catalyzer.template=true: the container's process is frozen by its
// holder once it says "ready" on its fork channel (fd 3) and waits
// there, and stays so; killing it ends
// the container with the status the shim reaps (137), and delete leaves
// no holder, process, cgroup or mount. A template that never signals is
// deleted as cleanly.
func TestOCIContainerdTemplate(t *testing.T) {
	e := startContainerd(t)
	root := filepath.Join(e.runcRoot, e.ns)
	tpl := e.startCounter([]string{"--annotation", "dev.catalyzer.template=true"}, "tpl",
		"/bin/sh", "-c", `v=$((6*7)); echo ready v=$v; echo ready >&3; read go <&3; echo resumed v=$v`)
	var fr struct{ Pid, Holder, Threads int }
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(root, "tpl", "frozen.json")); err == nil {
			if err := json.Unmarshal(b, &fr); err != nil {
				t.Fatalf("frozen.json %q: %v", b, err)
			}
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(root, "tpl", "holder.log"))
			t.Fatalf("template not frozen; output %q; holder.log %q", tpl.out.String(), log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(tpl.out.String(), "ready v=42") || strings.Contains(tpl.out.String(), "resumed") {
		t.Errorf("template output %q: want ready, not resumed", tpl.out.String())
	}
	// Frozen under the holder's ptrace: its tracer is the holder.
	st, err := procfs.Status(fr.Pid)
	tracer, _ := strconv.Atoi(strings.TrimSpace(st["TracerPid"]))
	tst, terr := procfs.Status(tracer)
	if err != nil || terr != nil || strings.TrimSpace(tst["Tgid"]) != strconv.Itoa(fr.Holder) || fr.Threads != 1 {
		t.Errorf("template %d: TracerPid %d (of %q), threads %d; want a thread of the holder %d and 1 thread (%v, %v)", fr.Pid, tracer, tst["Tgid"], fr.Threads, fr.Holder, err, terr)
	}
	// The holder answers on its socket, which only root may use.
	if st, err := os.Stat(filepath.Join(root, "tpl", "holder.sock")); err != nil {
		t.Errorf("holder.sock: %v", err)
	} else if st.Mode().Perm() != 0o600 {
		t.Errorf("holder.sock mode %v, want 0600", st.Mode().Perm())
	}
	c, err := net.Dial("unix", filepath.Join(root, "tpl", "holder.sock"))
	if err != nil {
		t.Fatalf("holder socket: %v", err)
	}
	fmt.Fprintln(c, `{"op":"info"}`)
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if !strings.Contains(line, fmt.Sprintf(`"pid":%d`, fr.Pid)) {
		t.Errorf("holder info: %q", line)
	}
	state, err := exec.Command(e.runtime, "--root", root, "state", "tpl").Output()
	if err != nil || !strings.Contains(string(state), `"status": "running"`) {
		t.Errorf("runtime state of the template: %v\n%s", err, state)
	}
	if err := e.killAndDelete(tpl, "tpl"); exitCodeOf(err) != 137 {
		t.Errorf("template: ctr run exit %v, want 137 (killed)", err)
	}
	if _, ok := procStartOf(fr.Holder); ok {
		t.Errorf("holder %d still there after delete", fr.Holder)
	}

	// Never ready, its fork channel closed: it runs on unfrozen, its
	// holder says why, and it is deleted as any container.
	w := e.startCounter([]string{"--annotation", "dev.catalyzer.template=true"}, "waiting", "/bin/sh", "-c", "exec 3<&-; "+counterScript)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(filepath.Join(root, "waiting", "holder.log")); strings.Contains(string(b), "closed its fork channel") {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("holder.log %q: want the closed channel named", b)
		}
	}
	n := waitCounter(t, &w.out, 1)
	waitCounter(t, &w.out, n+2)
	if err := e.killAndDelete(w, "waiting"); exitCodeOf(err) != 137 {
		t.Errorf("waiting template: ctr run exit %v, want 137", err)
	}
	e.checkNothingLeft()
	if out, _ := exec.Command("pgrep", "-f", "catalyzer-template-holder "+root).Output(); len(out) > 0 {
		t.Errorf("holders left: %s", out)
	}
}

// procStartOf reports whether pid is alive (not a zombie).
func procStartOf(pid int) (string, bool) {
	st, err := procfs.Stat(pid)
	if err != nil || st.Exited() {
		return "", false
	}
	return st.Comm, true
}
