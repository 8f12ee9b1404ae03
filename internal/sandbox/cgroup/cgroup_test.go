package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	cgroups "github.com/containerd/cgroups/v3"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

const hogEnv = "CATALYZER_CGROUP_HOG"

func TestMain(m *testing.M) {
	if os.Getenv(hogEnv) != "" {
		hog()
	}
	os.Exit(m.Run())
}

// hog waits for a byte on stdin (the parent has put it in its cgroup by
// then), then touches 200 MiB.
func hog() {
	var b [1]byte
	if _, err := os.Stdin.Read(b[:]); err != nil {
		os.Exit(3)
	}
	var keep [][]byte
	for range 200 {
		chunk := make([]byte, 1<<20)
		for i := 0; i < len(chunk); i += 4096 {
			chunk[i] = 1
		}
		keep = append(keep, chunk)
	}
	fmt.Println("survived", len(keep))
	os.Exit(0)
}

// testParent returns a parent unique to this run and removes it (every
// group under it, then the parent in every hierarchy) when the test ends.
func testParent(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Missing(t, "cgroup tests need root")
	}
	if Mode() == "unavailable" {
		testutil.Missing(t, "no cgroup file system mounted at %s", Root)
	}
	if _, err := hierarchyRoots(); err != nil {
		testutil.Missing(t, "cgroups unusable here: %v", err)
	}
	parent := fmt.Sprintf("catalyzer-test-%d/%s", os.Getpid(), t.Name())
	t.Cleanup(func() {
		if _, err := Sweep(parent); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		roots, _ := hierarchyRoots()
		for _, r := range roots {
			_ = os.Remove(filepath.Join(r, parent))
			_ = os.Remove(filepath.Join(r, filepath.Dir(parent)))
		}
	})
	return parent
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestMode(t *testing.T) {
	if m := Mode(); !slices.Contains([]string{"v1", "v2", "hybrid", "unavailable"}, m) {
		t.Fatalf("Mode() = %q", m)
	}
	t.Logf("mode %s", Mode())
}

func TestInvalidNames(t *testing.T) {
	for _, pn := range [][2]string{{"", "x"}, {"/", "x"}, {"..", "x"}, {"a/../b", "x"}, {"p", ""}, {"p", "/"}, {"p", ".."}, {"p", "."}, {"p", "a/b"}} {
		if _, err := New(pn[0], pn[1], Limits{}); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("New(%q, %q): got %v, want ErrInvalid", pn[0], pn[1], err)
		}
	}
	if _, err := New("p", "x", Limits{MemoryBytes: -1}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("negative limit: got %v", err)
	}
	if _, err := Sweep(".."); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Sweep(..): got %v", err)
	}
}

// TestLimits checks each limit in the file the host's cgroup version
// has: every assertion runs on v1 and on v2 (devices are an eBPF program
// on v2, checked by TestDeviceFilterCompiles and sandbox's TestDevices).
func TestLimits(t *testing.T) {
	parent := testParent(t)
	g, err := New(parent, "limits", Limits{MemoryBytes: 64 << 20, PidsMax: 16, CPUMillis: 500})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Delete()
	u, err := New(parent, "unlimited", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Delete()
	type want struct{ hier, file, value string }
	var limited, unlimited []want
	if _, ok := g.Dirs()["unified"]; ok {
		limited = []want{{"unified", "memory.max", "67108864"}, {"unified", "memory.oom.group", "1"},
			{"unified", "pids.max", "16"}, {"unified", "cpu.max", "50000 100000"}}
		if _, err := os.Stat(filepath.Join(g.Dirs()["unified"], "memory.swap.max")); err == nil {
			limited = append(limited, want{"unified", "memory.swap.max", "0"})
		}
		unlimited = []want{{"unified", "memory.max", "max"}, {"unified", "pids.max", "max"}, {"unified", "cpu.max", "max 100000"}}
	} else {
		limited = []want{{"memory", "memory.limit_in_bytes", "67108864"}, {"memory", "memory.swappiness", "0"},
			{"pids", "pids.max", "16"}, {"cpu", "cpu.cfs_quota_us", "50000"}, {"cpu", "cpu.cfs_period_us", "100000"},
			// Devices: only the sandbox's own nodes may be opened (mknod allowed).
			{"devices", "devices.list", "c *:* m\nb *:* m\nc 1:3 rwm\nc 1:5 rwm\nc 1:7 rwm\nc 1:8 rwm\nc 1:9 rwm\nc 5:0 rwm\nc 5:1 rwm\nc 5:2 rwm\nc 136:* rwm"}}
		if _, err := os.Stat(filepath.Join(g.Dirs()["memory"], "memory.memsw.limit_in_bytes")); err == nil {
			limited = append(limited, want{"memory", "memory.memsw.limit_in_bytes", "67108864"})
		}
		unlimited = []want{{"pids", "pids.max", "max"}, {"cpu", "cpu.cfs_quota_us", "-1"}}
	}
	for _, c := range []struct {
		g     *Group
		wants []want
	}{{g, limited}, {u, unlimited}} {
		for _, w := range c.wants {
			dir, ok := c.g.Dirs()[w.hier]
			if !ok {
				t.Errorf("%s: no %s hierarchy in %v", c.g.Path(), w.hier, c.g.Dirs())
				continue
			}
			if got := readFile(t, filepath.Join(dir, w.file)); got != w.value {
				t.Errorf("%s: %s/%s = %q, want %q", c.g.Path(), w.hier, w.file, got, w.value)
			}
		}
	}
	if d, ok := g.Dirs()["memory"]; ok {
		if oc := readFile(t, filepath.Join(d, "memory.oom_control")); !strings.Contains(oc, "oom_kill_disable 0") {
			t.Errorf("memory.oom_control: %q", oc)
		}
	}
}

func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return cmd
}

func TestAddKillDelete(t *testing.T) {
	parent := testParent(t)
	g, err := New(parent, "life", Limits{MemoryBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cmd := startSleep(t)
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	procs, err := g.Procs()
	if err != nil || !slices.Equal(procs, []int{cmd.Process.Pid}) {
		t.Fatalf("Procs = %v, %v; want [%d]", procs, err, cmd.Process.Pid)
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.PidsCurrent != 1 {
		t.Errorf("Stats %+v: want PidsCurrent 1", st)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("sleep ended with %v, want SIGKILL", err)
	}
	if procs, err := g.Procs(); err != nil || len(procs) != 0 {
		t.Fatalf("after Kill: Procs = %v, %v", procs, err)
	}
	if oom, err := g.OOMKilled(); err != nil || oom {
		t.Errorf("OOMKilled = %v, %v; want false", oom, err)
	}
	dirs := g.Dirs()
	if err := g.Delete(); err != nil {
		t.Fatal(err)
	}
	for h, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %s still there (%v)", h, d, err)
		}
	}
	if err := g.Delete(); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := g.Add(os.Getpid()); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Add after Delete: got %v, want ErrNotFound", err)
	}
}

func TestOOMKilled(t *testing.T) {
	parent := testParent(t)
	g, err := New(parent, "oom", Limits{MemoryBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Delete()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), hogEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		t.Fatal(err)
	}
	_, _ = stdin.Write([]byte{1})
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("hog ended with %v (output %q), want SIGKILL by the OOM killer", err, out.String())
	}
	oom, err := g.OOMKilled()
	if err != nil {
		t.Fatal(err)
	}
	if !oom {
		t.Fatal("OOMKilled = false after an OOM kill")
	}
}

func TestPidsMax(t *testing.T) {
	parent := testParent(t)
	g, err := New(parent, "pids", Limits{PidsMax: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Delete()
	cmd := exec.Command("sh", "-c", `read x; i=0; while [ $i -lt 12 ]; do sleep 100 & i=$((i+1)); done; echo forked-all`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// A file, not a pipe: the sleeps inherit it, and Wait must not wait
	// for them.
	outFile, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	cmd.Stdout, cmd.Stderr = outFile, outFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		t.Fatal(err)
	}
	_, _ = io.WriteString(stdin, "go\n")
	_ = cmd.Wait()
	out, _ := os.ReadFile(outFile.Name())
	if strings.Contains(string(out), "forked-all") {
		t.Fatalf("shell forked 12 children under pids.max 4: %q", out)
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.PidsCurrent > 4 {
		t.Errorf("pids.current %d > 4", st.PidsCurrent)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("shell: %q", strings.TrimSpace(string(out)))
}

func TestSweep(t *testing.T) {
	parent := testParent(t)
	if n, err := Sweep(parent); err != nil || n != 0 {
		t.Fatalf("Sweep of a missing parent = %d, %v", n, err)
	}
	var dirs []string
	for i := range 3 {
		g, err := New(parent, fmt.Sprintf("left-%d", i), Limits{MemoryBytes: 64 << 20, PidsMax: 32})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range g.Dirs() {
			dirs = append(dirs, d)
		}
	}
	g0, _ := New(parent, "left-0", Limits{}) // reopen to add a process
	cmd := startSleep(t)
	if err := g0.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	n, err := Sweep(parent)
	if err != nil || n != 3 {
		t.Fatalf("Sweep = %d, %v; want 3", n, err)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("the process in a swept group survived")
	}
	for _, d := range append(dirs, filepath.Dir(dirs[0])) {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after Sweep", d)
		}
	}
}

// TestControllersWithoutLimits: a group with no limits still has the
// memory and pids controllers (OOMKilled and Stats read their files), on
// v2 through the parent's delegation, which New no longer lets fail
// silently.
func TestControllersWithoutLimits(t *testing.T) {
	parent := testParent(t)
	g, err := New(parent, "nolimits", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Delete()
	d := g.Dirs()
	files := []string{filepath.Join(d["memory"], "memory.oom_control"), filepath.Join(d["pids"], "pids.current")}
	if u, ok := d["unified"]; ok {
		files = []string{filepath.Join(u, "memory.events"), filepath.Join(u, "pids.current")}
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("no %s: %v", f, err)
		}
	}
	if oom, err := g.OOMKilled(); err != nil || oom {
		t.Errorf("OOMKilled = %v, %v; want false, nil", oom, err)
	}
}

// TestFavorMigrations: on cgroup v1 the hierarchy is mounted with
// favordynmods while held, and gone after release.
func TestFavorMigrations(t *testing.T) {
	testutil.RequiresRoot(t)
	if cgroups.Mode() == cgroups.Unified {
		t.Skip("cgroup v2: nothing to do (fork boots are born in their cgroup)")
	}
	dir := filepath.Join(t.TempDir(), "favor")
	mounted := func() string {
		b, _ := os.ReadFile("/proc/self/mountinfo")
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, " "+dir+" ") {
				return l
			}
		}
		return ""
	}
	release, err := FavorMigrations(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l := mounted(); !strings.Contains(l, "favordynmods") || !strings.Contains(l, "name="+favorName) {
		t.Fatalf("mount at %s: %q, want a named hierarchy with favordynmods", dir, l)
	}
	// A second one (a second daemon, or one that died and restarted)
	// shares the hierarchy.
	release2, err := FavorMigrations(dir + "2")
	if err != nil {
		t.Fatal(err)
	}
	if err := release2(); err != nil {
		t.Fatal(err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if l := mounted(); l != "" {
		t.Fatalf("still mounted after release: %q", l)
	}
}
