package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/catalyzer/catalyzer/internal/client"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// The end-to-end tests drive the real binary: built once, run as a
// daemon, killed with SIGKILL, restarted.

var binary string

func TestMain(m *testing.M) {
	// Descriptors the test runner inherited (a CI harness's pipes) must
	// not leak into the processes these tests start and checkpoint.
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		for _, e := range ents {
			if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
				syscall.CloseOnExec(fd)
			}
		}
	}
	dir, err := os.MkdirTemp("", "catalyzer-e2e-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "catalyzer")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type daemon struct {
	cmd   *exec.Cmd
	addr  string
	state string
}

// startDaemon starts serve on state, with extra flags, and waits until it
// answers a client that found its token in state.
func startDaemon(t *testing.T, state, parent string, extra ...string) *daemon {
	t.Helper()
	return startDaemonWith(t, state, parent, os.Stderr, extra...)
}

// client is an API client of d with the token from its state dir.
func (d *daemon) client(t *testing.T) *client.Client {
	t.Helper()
	tok, err := client.ResolveToken("", d.state)
	if err != nil {
		t.Fatal(err)
	}
	return client.New(d.addr, tok)
}

func (d *daemon) stop() {
	if d.cmd.ProcessState == nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		d.cmd.Wait()
	}
}

// runCLI runs a client verb against d, which it finds as a user on d's
// host would: its address and its state dir (for the token).
func runCLI(t *testing.T, d *daemon, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "CATALYZER_ADDR="+d.addr, "CATALYZER_STATE_DIR="+d.state)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("catalyzer %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func repoExamples() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples")
}

// TestDaemonKilled: after SIGKILL of the daemon, its instances die with
// it, and a restarted daemon still has every function and cleans up the
// cgroups the dead one left.
func TestDaemonKilled(t *testing.T) {
	testutil.RequiresRoot(t)
	state := t.TempDir()
	parent := fmt.Sprintf("catalyzer-test-e2e-%d", os.Getpid())
	before := testutil.Take(t, parent, state)

	d := startDaemon(t, state, parent)
	runCLI(t, d, "fn", "deploy", "hello", "--runtime", "python", "--handler", "main.handler", "--code", filepath.Join(repoExamples(), "python", "hello"))
	out := runCLI(t, d, "fn", "invoke", "hello", "--boot", "scratch", "--data", `{"name":"e2e"}`)
	if !strings.Contains(out, `"hello": "e2e"`) && !strings.Contains(out, `"hello":"e2e"`) {
		t.Fatalf("invoke output: %s", out)
	}
	instances := testutil.Descendants(d.cmd.Process.Pid)
	if len(instances) == 0 {
		t.Fatal("no live instance after invoke (keep-alive should keep one)")
	}
	oldGroups := testutil.CgroupDirs(filepath.Join(parent, "*"))
	if len(oldGroups) == 0 {
		t.Fatal("no instance cgroups while the daemon runs")
	}
	d.cmd.Process.Kill()
	d.cmd.Wait()
	// The instance dies with the daemon (Pdeathsig)...
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range instances {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("instance process %d survived the daemon's SIGKILL", pid)
		}
	}

	// ...and the restarted daemon sweeps its cgroup and still has the function.
	d2 := startDaemon(t, state, parent)
	for _, g := range oldGroups {
		if _, err := os.Stat(g); err == nil {
			t.Errorf("cgroup %s of the killed daemon survived the restart", g)
		}
	}
	if out := runCLI(t, d2, "fn", "ls"); !strings.Contains(out, "hello") {
		t.Fatalf("function lost across SIGKILL: %s", out)
	}
	runCLI(t, d2, "fn", "invoke", "hello")
	runCLI(t, d2, "fn", "rm", "hello")
	d2.stop()
	after := testutil.Take(t, parent, state)
	if after.Descendants != before.Descendants || after.Mounts != before.Mounts || after.Cgroups != before.Cgroups {
		t.Fatalf("leak: before %+v after %+v", before, after)
	}
}

// TestBenchJSON runs the benchmark verb against a daemon and checks the
// --json contract.
func TestBenchJSON(t *testing.T) {
	testutil.RequiresRoot(t)
	d := startDaemon(t, t.TempDir(), fmt.Sprintf("catalyzer-test-bench-%d", os.Getpid()))
	runCLI(t, d, "fn", "deploy", "hello", "--runtime", "python", "--handler", "main.handler", "--code", filepath.Join(repoExamples(), "python", "hello"))
	out := runCLI(t, d, "bench", "--function", "hello", "--boot", "scratch", "-n", "4", "--baselines", "direct,runc", "--json")
	var r struct {
		Function  string           `json:"function"`
		Boot      string           `json:"boot"`
		N         int              `json:"n"`
		P50       int64            `json:"p50_us"`
		P99       int64            `json:"p99_us"`
		Phases    map[string]int64 `json:"phases"`
		Baselines map[string]int64 `json:"baselines"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, out)
	}
	if r.Function != "hello" || r.Boot != "scratch" || r.N != 4 || r.P50 <= 0 || r.P99 < r.P50 || r.Phases["init"] <= 0 || r.Baselines["direct"] <= 0 {
		t.Fatalf("bench --json: %+v", r)
	}
	if _, err := exec.LookPath("runc"); err == nil && r.Baselines["runc"] <= 0 {
		t.Fatalf("runc is installed but its baseline was not measured: %s", out)
	}
	// auto would reuse instead of booting: refused with a reason.
	cmd := exec.Command(binary, "bench", "--addr", d.addr, "--state-dir", d.state, "--function", "hello", "--boot", "auto")
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "must name a mode") {
		t.Fatalf("bench --boot auto: %v %s", err, b)
	}
}

// TestCheckpointRestoreSandbox: catalyzer checkpoint of a plain Python
// process, then catalyzer restore --sandbox: it continues where it was, as
// PID 1 of a sandbox with Docker's seccomp profile, and leaves nothing.
func TestCheckpointRestoreSandbox(t *testing.T) {
	testutil.RequiresRoot(t)
	img, pid, first := checkpointPython(t, "/usr/bin/python3", `import sys, os, socket
n = 0
for line in sys.stdin:
    n += 1
    status = open("/proc/self/status").read()
    print(n, os.getpid(), socket.gethostname(), status.split("Seccomp:")[1].split()[0], flush=True)
`)
	if !strings.HasPrefix(first, "1 ") {
		t.Fatalf("victim said %q", first)
	}
	// On the host, it gets its own pid back (free now).
	host := exec.Command(binary, "restore", "--image", img)
	host.Stdin = strings.NewReader("b\n")
	if out, err := host.CombinedOutput(); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	} else if f := strings.Fields(string(out)); len(f) != 4 || f[0] != "2" || f[1] != fmt.Sprint(pid) {
		t.Errorf("host restore said %q, want counter 2 and the original pid %d", out, pid)
	}
	restore := exec.Command(binary, "restore", "--image", img, "--sandbox")
	restore.Stdin = strings.NewReader("b\nc\n")
	out, err := restore.CombinedOutput()
	if err != nil {
		t.Fatalf("restore --sandbox: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	hostname, _ := os.Hostname()
	if len(lines) != 2 {
		t.Fatalf("restored process said %q", out)
	}
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) != 4 || f[0] != fmt.Sprint(i+2) || f[1] != "1" || f[2] == hostname || f[3] != "2" {
			t.Errorf("line %q: want counter %d, pid 1, its own hostname, seccomp 2", l, i+2)
		}
	}
	if dirs := testutil.CgroupDirs("catalyzer-cli"); len(dirs) != 0 {
		t.Errorf("cgroups left: %v", dirs)
	}
}

// TestRestoreSandboxFailureLeavesNothing: a restore --sandbox whose
// process exits non-zero exits with its status, and one that fails inside
// the sandbox (the image maps a binary the sandbox's root does not have)
// exits non-zero; neither leaves a mount, cgroup or run dir (the verb used
// to os.Exit past its cleanup).
func TestRestoreSandboxFailureLeavesNothing(t *testing.T) {
	testutil.RequiresRoot(t)
	checkClean := func(what string) {
		t.Helper()
		if m := mountsUnder(t, "/run/catalyzer/sandbox/catalyzer-cli"); len(m) != 0 {
			t.Errorf("%s: mounts left: %v", what, m)
		}
		if dirs := testutil.CgroupDirs("catalyzer-cli"); len(dirs) != 0 {
			t.Errorf("%s: cgroups left: %v", what, dirs)
		}
		if _, err := os.Stat("/run/catalyzer/sandbox/catalyzer-cli"); err == nil {
			t.Errorf("%s: run dir left", what)
		}
	}
	// A process that exits 3 on its second line.
	img3, _, _ := checkpointPython(t, "/usr/bin/python3", "import sys\nn = 0\nfor l in sys.stdin:\n    n += 1\n    print(l, flush=True)\n    if n == 2: sys.exit(3)")
	restore := exec.Command(binary, "restore", "--image", img3, "--sandbox")
	restore.Stdin = strings.NewReader("b\n")
	out, err := restore.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Errorf("restore --sandbox of a process exiting 3: %v %s", err, out)
	}
	checkClean("exit 3")
	dir := t.TempDir()
	py := filepath.Join(dir, "py3")
	b, err := os.ReadFile("/usr/bin/python3")
	if err != nil {
		testutil.Missing(t, "needs /usr/bin/python3: %v", err)
	}
	os.WriteFile(py, b, 0o755)
	img, _, _ := checkpointPython(t, py, "import sys\nfor l in sys.stdin: print(l, flush=True)")
	restore = exec.Command(binary, "restore", "--image", img, "--sandbox")
	restore.Stdin = strings.NewReader("b\n")
	out, err = restore.CombinedOutput()
	if err == nil {
		t.Fatalf("restore --sandbox of an image mapping %s (not in the sandbox's root) succeeded: %s", py, out)
	}
	t.Logf("restore --sandbox: %v: %s", err, strings.TrimSpace(string(out)))
	checkClean("failed restore")
}

// checkpointPython runs python (a path) with script (from /, which the
// sandbox's root has too), feeds it one line, checkpoints it (fds 0-2
// reconnected) and returns the image dir, the process's pid and its first
// line of output.
func checkpointPython(t *testing.T, python, script string) (img string, pid int, first string) {
	t.Helper()
	victim := exec.Command(python, "-u", "-c", script)
	victim.Dir = "/"
	in, _ := victim.StdinPipe()
	outR, outW, _ := os.Pipe()
	victim.Stdout = outW
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	defer victim.Process.Kill()
	in.Write([]byte("a\n"))
	first, _ = bufio.NewReader(outR).ReadString('\n')
	img = filepath.Join(t.TempDir(), "img")
	if out, err := exec.Command(binary, "checkpoint", "--pid", fmt.Sprint(victim.Process.Pid), "--image", img,
		"--reconnect", "0", "--reconnect", "1", "--reconnect", "2").CombinedOutput(); err != nil {
		t.Fatalf("checkpoint: %v\n%s", err, out)
	}
	victim.Wait()
	return img, victim.Process.Pid, first
}

// TestAPIToken is the attack "a caller without the token drives the API":
// serve writes a 0600 token at first start and keeps it across restarts;
// the CLI without it, or with a wrong one, is refused with a message that
// says where the token is; $CATALYZER_API_TOKEN and --token-file work.
func TestAPIToken(t *testing.T) {
	testutil.RequiresRoot(t)
	state := t.TempDir()
	parent := fmt.Sprintf("catalyzer-test-token-%d", os.Getpid())
	d := startDaemon(t, state, parent)
	path := filepath.Join(state, "api.token")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("api.token has mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	tok := strings.TrimSpace(string(b))
	if len(tok) != 64 {
		t.Fatalf("token %q: want 64 hex digits", tok)
	}

	cli := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), append([]string{"CATALYZER_ADDR=" + d.addr, "CATALYZER_API_TOKEN="}, env...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// No token reachable: the state dir the CLI looks in has none.
	if out, err := cli([]string{"CATALYZER_STATE_DIR=" + t.TempDir()}, "fn", "ls"); err == nil || !strings.Contains(out, "api.token") {
		t.Errorf("fn ls without a token: %v %s", err, out)
	}
	// A wrong token (right length) is refused by the daemon: 401.
	wrong := strings.Repeat("0", 64)
	if out, err := cli([]string{"CATALYZER_API_TOKEN=" + wrong}, "fn", "ls"); err == nil || !strings.Contains(out, "HTTP 401") || !strings.Contains(out, "api.token") {
		t.Errorf("fn ls with a wrong token: %v %s", err, out)
	}
	// The three ways to give the right one.
	if out, err := cli([]string{"CATALYZER_API_TOKEN=" + tok}, "fn", "ls"); err != nil {
		t.Errorf("fn ls with $CATALYZER_API_TOKEN: %v %s", err, out)
	}
	if out, err := cli(nil, "fn", "ls", "--token-file", path); err != nil {
		t.Errorf("fn ls --token-file: %v %s", err, out)
	}
	if out, err := cli(nil, "fn", "ls", "--state-dir", state); err != nil {
		t.Errorf("fn ls --state-dir: %v %s", err, out)
	}
	// The env var wins over a file.
	if out, err := cli([]string{"CATALYZER_API_TOKEN=" + wrong}, "fn", "ls", "--token-file", path); err == nil {
		t.Errorf("$CATALYZER_API_TOKEN did not win over --token-file: %s", out)
	}
	// A restart keeps the token.
	d.stop()
	startDaemon(t, state, parent)
	if b2, _ := os.ReadFile(path); strings.TrimSpace(string(b2)) != tok {
		t.Errorf("token changed across a restart: %q, was %q", b2, tok)
	}
}

// TestServePolicyFlags: by default serve refuses code by path and the
// host's network (403, saying which flag allows it); --code-root and
// --allow-host-network allow them.
func TestServePolicyFlags(t *testing.T) {
	testutil.RequiresRoot(t)
	parent := fmt.Sprintf("catalyzer-test-policy-%d", os.Getpid())
	hello := filepath.Join(repoExamples(), "python", "hello")
	deploy := func(d *daemon, extra ...string) (string, error) {
		args := append([]string{"fn", "deploy", "hello", "--runtime", "python", "--handler", "main.handler", "--code", hello}, extra...)
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), "CATALYZER_ADDR="+d.addr, "CATALYZER_STATE_DIR="+d.state)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	d := startDaemon(t, t.TempDir(), parent, "--no-templates")
	if out, err := deploy(d, "--by-path"); err == nil || !strings.Contains(out, "HTTP 403") || !strings.Contains(out, "--code-root") {
		t.Errorf("--by-path on a default daemon: %v %s", err, out)
	}
	if out, err := deploy(d, "--network", "host"); err == nil || !strings.Contains(out, "HTTP 403") || !strings.Contains(out, "--allow-host-network") {
		t.Errorf("--network host on a default daemon: %v %s", err, out)
	}
	d.stop()
	d = startDaemon(t, t.TempDir(), parent, "--no-templates", "--code-root", repoExamples(), "--allow-host-network")
	if out, err := deploy(d, "--by-path", "--network", "host"); err != nil {
		t.Errorf("--by-path --network host on a daemon that allows both: %v %s", err, out)
	}
}

// mountsUnder lists the mount points at or below dir in this mount
// namespace (the daemon's).
func mountsUnder(t *testing.T, dir string) []string { return testutil.MountsUnder(t, dir) }

// TestRestartStackedLayers: a daemon SIGKILLed with its images' rootfs
// layers and its instances' overlays mounted, some of them stacked on one
// directory and one busy, must not keep the next one from starting (it
// refused: "remove .../layer-...: device or resource busy"), and a daemon
// stopped with SIGTERM leaves no mount and no run dir behind. Three
// functions with identical code share an image key; their layers were
// mounted on one directory, named by that key (so releasing one
// unmounted another's): now each has its own, and the stacking a daemon
// of before left is made by hand.
func TestRestartStackedLayers(t *testing.T) {
	testutil.RequiresRoot(t)
	state := t.TempDir()
	parent := fmt.Sprintf("catalyzer-test-restart-%d", os.Getpid())
	run := filepath.Join("/run/catalyzer/sandbox", parent)
	before := testutil.Take(t, parent, state)

	d := startDaemon(t, state, parent)
	c := d.client(t)
	code := filepath.Join(repoExamples(), "python", "hello")
	names := []string{"a", "b", "c"}
	for _, n := range names {
		runCLI(t, d, "fn", "deploy", n, "--runtime", "python", "--handler", "main.handler", "--code", code)
	}
	for _, n := range names {
		deadline := time.Now().Add(60 * time.Second)
		for {
			f, err := c.Get(context.Background(), n)
			if err != nil {
				t.Fatal(err)
			}
			if f.Image == "ready" {
				break
			}
			if (f.Image != "building" && f.Image != "none") || time.Now().After(deadline) {
				t.Fatalf("image of %s: %s", n, f.Image)
			}
			time.Sleep(20 * time.Millisecond)
		}
		runCLI(t, d, "fn", "invoke", n, "--boot", "warm")
	}
	layers := map[string]int{}
	for _, m := range mountsUnder(t, run) {
		if strings.HasPrefix(filepath.Base(m), "layer-") {
			layers[m]++
		}
	}
	if len(layers) != len(names) {
		t.Errorf("layer mounts %v, want one per function", layers)
	}
	var layer string
	for m, n := range layers {
		if n != 1 {
			t.Errorf("layer %s mounted %d times", m, n)
		}
		layer = m
	}
	// Each layer's tmpfs is sized to what it holds (it was 64 MiB each).
	mi, err := procfs.Mounts(procfs.Self)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mi {
		if layers[m.MountPoint] > 0 {
			var kb int64
			for _, o := range strings.Split(m.SuperOptions, ",") {
				if v, ok := strings.CutPrefix(o, "size="); ok {
					fmt.Sscanf(v, "%dk", &kb)
				}
			}
			t.Logf("layer %s: tmpfs of %d KiB", filepath.Base(m.MountPoint), kb)
			if kb <= 0 || kb >= 64<<10 {
				t.Errorf("layer %s: tmpfs size %d KiB, want sized to its contents", m.MountPoint, kb)
			}
		}
	}
	d.cmd.Process.Kill()
	d.cmd.Wait()
	// What an older daemon left: two more tmpfs stacked on one layer, and
	// a tmpfs a process (not the daemon's, so alive) has its cwd in.
	for range 2 {
		if err := syscall.Mount("tmpfs", layer, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
	}
	busy := filepath.Join(run, "busy")
	os.MkdirAll(busy, 0o700)
	if err := syscall.Mount("tmpfs", busy, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("/bin/sleep", "100")
	sleeper.Dir = busy
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	t.Logf("left by the killed daemon and planted: %d mounts under %s", len(mountsUnder(t, run)), run)

	d2 := startDaemon(t, state, parent)
	for _, n := range names {
		runCLI(t, d2, "fn", "invoke", n, "--boot", "scratch")
	}
	d2.cmd.Process.Signal(syscall.SIGTERM)
	if err := d2.cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
	if m := mountsUnder(t, run); len(m) > 0 {
		t.Errorf("mounted after SIGTERM: %v", m)
	}
	if _, err := os.Stat(run); !os.IsNotExist(err) {
		t.Errorf("run dir %s after SIGTERM: %v", run, err)
	}
	sleeper.Process.Kill()
	sleeper.Wait()
	after := testutil.Take(t, parent, state) // mounts under run and state only
	if after.Descendants != before.Descendants || after.Mounts != before.Mounts || after.Cgroups != before.Cgroups {
		t.Fatalf("leak: before %+v after %+v", before, after)
	}
}

// TestShutdownReportsLeftovers: what a SIGTERM shutdown cannot remove is
// named in the daemon's log and fails the serve command (it said
// nothing), and the next start goes on regardless and removes it once it
// can.
func TestShutdownReportsLeftovers(t *testing.T) {
	testutil.RequiresRoot(t)
	state := t.TempDir()
	parent := fmt.Sprintf("catalyzer-test-leftover-%d", os.Getpid())
	run := filepath.Join("/run/catalyzer/sandbox", parent)
	stuck := filepath.Join(run, "stuck")
	t.Cleanup(func() { exec.Command("chattr", "-i", stuck).Run(); os.RemoveAll(run) })

	var log strings.Builder
	cmd := startDaemonWith(t, state, parent, &log).cmd
	// Something in the run dir that not even root can remove.
	if err := os.MkdirAll(filepath.Join(stuck, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("chattr", "+i", stuck).Run(); err != nil {
		t.Skipf("chattr +i: %v", err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if err == nil {
		t.Errorf("serve exited 0 though shutdown left %s", stuck)
	}
	if !strings.Contains(log.String(), stuck) {
		t.Errorf("the log does not name %s:\n%s", stuck, log.String())
	}
	t.Logf("serve: %v; log:\n%s", err, log.String())

	// A start with it still there, and with staging it cannot remove,
	// goes on; once removable, it goes.
	stage := filepath.Join(state, "tmp", "stuck")
	if err := os.MkdirAll(filepath.Join(stage, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	exec.Command("chattr", "+i", stage).Run()
	t.Cleanup(func() { exec.Command("chattr", "-i", stage).Run() })
	d := startDaemon(t, state, parent)
	exec.Command("chattr", "-i", stuck).Run()
	exec.Command("chattr", "-i", stage).Run()
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
	if _, err := os.Stat(run); !os.IsNotExist(err) {
		t.Errorf("run dir %s after SIGTERM: %v", run, err)
	}
}

// startDaemonWith is startDaemon with the daemon's log going to log.
func startDaemonWith(t *testing.T, state, parent string, log io.Writer, flags ...string) *daemon {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(binary, append([]string{"serve", "--state-dir", state, "--listen", addr, "--cgroup-parent", parent, "--log-level", "warn"}, flags...)...)
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, addr: addr, state: state}
	t.Cleanup(func() { d.stop() })
	for i := 0; i < 200; i++ {
		// The token appears before the daemon listens.
		if tok, err := client.ResolveToken("", state); err == nil {
			if _, err := client.New(addr, tok).List(context.Background()); err == nil {
				return d
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("daemon did not come up on %s: %v", addr, log)
	return nil
}

// TestMaxFunctions: a daemon keeps at most --max-functions functions; a
// deploy of one more is refused with 429 and says why, a redeploy of an
// existing one is not, and a delete makes room.
func TestMaxFunctions(t *testing.T) {
	testutil.RequiresRoot(t)
	parent := fmt.Sprintf("catalyzer-test-maxfn-%d", os.Getpid())
	d := startDaemonWith(t, t.TempDir(), parent, os.Stderr, "--max-functions", "2", "--no-templates")
	code := filepath.Join(repoExamples(), "python", "hello")
	deploy := func(name string) (string, error) {
		cmd := exec.Command(binary, "fn", "deploy", name, "--runtime", "python", "--handler", "main.handler", "--code", code)
		cmd.Env = append(os.Environ(), "CATALYZER_ADDR="+d.addr, "CATALYZER_STATE_DIR="+d.state)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, n := range []string{"a", "b", "a"} {
		if out, err := deploy(n); err != nil {
			t.Fatalf("deploy %s: %v\n%s", n, err, out)
		}
	}
	out, err := deploy("c")
	if err == nil {
		t.Fatalf("a third function was deployed with --max-functions 2: %s", out)
	}
	if !strings.Contains(out, "429") || !strings.Contains(out, "max-functions") {
		t.Errorf("refusal does not say 429 and why: %s", out)
	}
	t.Logf("refused: %s", strings.TrimSpace(out))
	runCLI(t, d, "fn", "rm", "b")
	if out, err := deploy("c"); err != nil {
		t.Fatalf("deploy after a delete: %v\n%s", err, out)
	}
}

// TestDeepEventEveryBootMode: an event nested 1000 deep (and a handler
// recursing deep on top of that) gets the same answer in every boot mode.
// A restored stack did not grow: warm and cold died of SIGSEGV where
// scratch and fork raised RecursionError.
func TestDeepEventEveryBootMode(t *testing.T) {
	testutil.RequiresRoot(t)
	parent := fmt.Sprintf("catalyzer-test-deep-%d", os.Getpid())
	d := startDaemon(t, t.TempDir(), parent)
	code := t.TempDir()
	if err := os.WriteFile(filepath.Join(code, "main.py"), []byte(`import sys

def depth(x):
    n = 0
    while isinstance(x, list) and x:
        x, n = x[0], n + 1
    return n

def down(n):
    return 0 if n == 0 else 1 + down(n - 1)

def handler(event, context):
    sys.setrecursionlimit(20000)
    return {"depth": depth(event.get("deep")), "down": down(int(event.get("down", 0)))}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	runCLI(t, d, "fn", "deploy", "deep", "--runtime", "python", "--handler", "main.handler", "--code", code)
	c := d.client(t)
	deadline := time.Now().Add(60 * time.Second)
	for {
		f, err := c.Get(context.Background(), "deep")
		if err != nil {
			t.Fatal(err)
		}
		if f.Image == "ready" && f.Template == "ready" {
			break
		}
		if time.Now().After(deadline) || strings.HasPrefix(f.Image, "failed") {
			t.Fatalf("template %s, image %s", f.Template, f.Image)
		}
		time.Sleep(20 * time.Millisecond)
	}
	event := `{"down": 8000, "deep": ` + strings.Repeat("[", 990) + strings.Repeat("]", 990) + `}`
	answers := map[string]string{}
	for _, mode := range []string{"scratch", "fork", "warm", "cold"} {
		inv, err := c.Invoke(context.Background(), "deep", mode, []byte(event))
		answers[mode] = fmt.Sprintf("%s %v", inv.Output, err)
		t.Logf("%s: %s", mode, answers[mode])
	}
	for _, mode := range []string{"fork", "warm", "cold"} {
		if answers[mode] != answers["scratch"] {
			t.Errorf("%s answers %q, scratch %q", mode, answers[mode], answers["scratch"])
		}
	}
}
