package sandbox

import (
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/sys/capability"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

var testParent = fmt.Sprintf("catalyzer-test-%d", os.Getpid())

func TestMain(m *testing.M) {
	MaybeInit()
	code := m.Run()
	if os.Geteuid() == 0 {
		if _, err := Sweep(testParent); err != nil {
			fmt.Fprintln(os.Stderr, "sweep:", err)
			code = 1
		}
	}
	os.Exit(code)
}

const (
	sh     = "/bin/sh"
	python = "/usr/bin/python3" // Debian's, not the pyenv shim in PATH
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Missing(t, "needs root (namespaces, mounts, cgroups)")
	}
	for _, p := range []string{sh, python} {
		if _, err := os.Stat(p); err != nil {
			testutil.Missing(t, "needs %s: %v", p, err)
		}
	}
}

var seq atomic.Int64

func newID() string { return fmt.Sprintf("t%d-%d", os.Getpid(), seq.Add(1)) }

func baseConfig(argv ...string) Config {
	return Config{EnvConfig: EnvConfig{ID: newID(), CgroupParent: testParent},
		Process: Process{Argv: argv, Env: []string{"PATH=/usr/bin:/bin", "HOME=/"}}}
}

// run starts cfg, waits for it and returns its combined output and exit.
func run(t *testing.T, cfg Config) (string, Exit) {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cfg.Stdout, cfg.Stderr = out, out
	s, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer func() {
		if err := s.Destroy(); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	}()
	var ex Exit
	select {
	case <-s.Done():
		ex, err = s.Wait()
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("sandbox did not exit")
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b), ex
}

func shell(t *testing.T, script string, mod ...func(*Config)) string {
	t.Helper()
	cfg := baseConfig(sh, "-c", script)
	for _, m := range mod {
		m(&cfg)
	}
	out, ex := run(t, cfg)
	if ex.Code != 0 {
		t.Fatalf("script exited %+v; output:\n%s", ex, out)
	}
	return out
}

func TestPIDNamespace(t *testing.T) {
	requireRoot(t)
	out := shell(t, `echo self=$$; cat /proc/1/cmdline | tr '\0' ' '; echo; ls /proc | grep -E '^[0-9]+$' | tr '\n' ' '`)
	if !strings.Contains(out, "self=1\n") {
		t.Errorf("the sandboxed program is not PID 1:\n%s", out)
	}
	pids := strings.Fields(strings.Split(out, "\n")[2])
	// sh, and the ls and grep of the pipeline: nothing of the host.
	if len(pids) > 4 || !slices.Contains(pids, "1") {
		t.Errorf("sees pids beyond its own namespace: %v", pids)
	}
}

func TestHostnameAndNetworkNone(t *testing.T) {
	requireRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	cfg := baseConfig(python, "-c", fmt.Sprintf(`
import socket, os
print("host", socket.gethostname())
print("ifs", sorted(os.listdir("/sys/class/net")))
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("127.0.0.1", %d)); print("connect ok")
except OSError as e:
    print("connect failed", e.errno)
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(); c = socket.create_connection(l.getsockname()); print("lo works")
`, port))
	cfg.Hostname = "fn-host"
	out, ex := run(t, cfg)
	if ex.Code != 0 {
		t.Fatalf("exit %+v:\n%s", ex, out)
	}
	for _, want := range []string{"host fn-host\n", "ifs ['lo']\n", "connect failed", "lo works"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	if h, _ := os.Hostname(); h == "fn-host" {
		t.Errorf("host's hostname changed")
	}
}

func TestNetworkHost(t *testing.T) {
	requireRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	out := shell(t, "", func(c *Config) {
		c.Argv = []string{python, "-c", fmt.Sprintf(`import socket; socket.create_connection(("127.0.0.1", %d), 2); print("connect ok")`, port)}
		c.Network = NetworkHost
	})
	if !strings.Contains(out, "connect ok") {
		t.Errorf("host network: %s", out)
	}
}

func TestRootfsWrites(t *testing.T) {
	requireRoot(t)
	name := "catalyzer-test-" + newID()
	hostFile := filepath.Join("/etc", name)
	defer os.Remove(hostFile)
	script := fmt.Sprintf(`echo sandbox > /etc/%s && cat /etc/%s && echo tmp > /tmp/x && cat /tmp/x && echo root > /rootfile && cat /rootfile && echo x >> /etc/hostname && echo ok`, name, name)
	out := shell(t, script)
	if !strings.Contains(out, "sandbox\ntmp\nroot\nok") {
		t.Errorf("writes inside the sandbox: %s", out)
	}
	if _, err := os.Stat(hostFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("write reached the host: %s: %v", hostFile, err)
	}
	if _, err := os.Stat("/rootfile"); err == nil {
		t.Errorf("/rootfile reached the host")
	}
	// A second sandbox does not see the first one's writes.
	out = shell(t, fmt.Sprintf(`test -e /etc/%s && echo leaked || echo clean`, name))
	if !strings.Contains(out, "clean") {
		t.Errorf("upper layer survived Destroy: %s", out)
	}
}

func TestLimits(t *testing.T) {
	requireRoot(t)
	t.Run("memory", func(t *testing.T) {
		if _, err := os.Stat(filepath.Dir(testutil.CgroupFile("", "memory", "memory.limit_in_bytes", "memory.max"))); err != nil {
			testutil.Missing(t, "no memory controller on this host")
		}
		cfg := baseConfig(python, "-c", `b = []
while True: b.append(bytearray(8 << 20))`)
		cfg.Limits = cgroup.Limits{MemoryBytes: 64 << 20}
		out, ex := run(t, cfg)
		if !ex.OOMKilled || ex.Signal != 9 {
			t.Errorf("want OOMKilled by SIGKILL, got %+v:\n%s", ex, out)
		}
	})
	t.Run("pids", func(t *testing.T) {
		cfg := baseConfig(python, "-c", `
import os, time
n = 0
try:
    for i in range(100):
        if os.fork() == 0:
            time.sleep(30); os._exit(0)
        n += 1
except OSError as e:
    print("fork failed after", n, e.errno)`)
		cfg.Limits = cgroup.Limits{PidsMax: 8}
		out, ex := run(t, cfg)
		if ex.Code != 0 || !strings.Contains(out, "fork failed after 7 11") {
			t.Errorf("pids limit 8: %+v %s", ex, out)
		}
	})
}

func capMask(names []string) uint64 {
	caps, _ := parseCaps(names)
	var m uint64
	for _, c := range caps {
		m |= 1 << uint(c)
	}
	return m
}

func statusField(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestRootfsDir(t *testing.T) {
	requireRoot(t)
	rootfs := t.TempDir()
	for _, l := range []string{"bin", "lib", "lib64"} {
		if err := os.Symlink("usr/"+l, filepath.Join(rootfs, l)); err != nil {
			t.Fatal(err)
		}
	}
	for _, userns := range []bool{false, true} {
		out := shell(t, `ls / | tr '\n' ' '; echo; echo x > /new && echo ok`, func(c *Config) {
			c.Rootfs = rootfs
			c.Binds = []Bind{{Source: "/usr", Target: "/usr"}}
			c.OwnUserNS = userns
		})
		if !strings.HasPrefix(out, "bin dev lib lib64 proc sys tmp usr \nok") {
			t.Errorf("userns=%v: rootfs listing: %q", userns, out)
		}
	}
	if ents, _ := os.ReadDir(rootfs); len(ents) != 3 {
		t.Errorf("rootfs dir modified: %v", ents)
	}
}

func TestSecurity(t *testing.T) {
	requireRoot(t)
	out := shell(t, `cat /proc/self/status; mount -t tmpfs x /mnt 2>/dev/null && echo MOUNTED; unshare -U true 2>/dev/null && echo UNSHARED; unshare -m true 2>/dev/null && echo UNSHARED; ulimit -n; echo end`)
	want := fmt.Sprintf("%016x", capMask(Capabilities()))
	for _, k := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if got := statusField(out, k); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	for k, want := range map[string]string{"CapAmb": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2", "Uid": "0\t0\t0\t0"} {
		if got := statusField(out, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if strings.Contains(out, "MOUNTED") || strings.Contains(out, "UNSHARED") {
		t.Errorf("mount/unshare succeeded:\n%s", out)
	}
	if !strings.Contains(out, "1024\nend") {
		t.Errorf("RLIMIT_NOFILE not 1024:\n%s", out)
	}

	out = shell(t, `grep -E '^(Seccomp|CapEff):' /proc/self/status`, func(c *Config) {
		c.NoSeccomp = true
		c.Caps = []string{"CAP_KILL"}
	})
	if statusField(out, "Seccomp") != "0" || statusField(out, "CapEff") != fmt.Sprintf("%016x", uint64(1)<<uint(capability.CAP_KILL)) {
		t.Errorf("NoSeccomp + Caps=[KILL]:\n%s", out)
	}
}

func TestMaskedAndReadonly(t *testing.T) {
	requireRoot(t)
	out := shell(t, `
for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do test -e $p && echo "$p $(wc -c < $p)"; done
for p in /proc/acpi /proc/scsi /sys/firmware; do test -d $p && echo "$p $(ls -A $p | wc -l)"; done
(echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo WROTE-SYS
test -e /proc/sysrq-trigger && (echo x > /proc/sysrq-trigger) 2>/dev/null && echo WROTE-SYSRQ
touch /sys/x 2>/dev/null && echo WROTE-SYSFS
grep -c . /proc/self/mountinfo >/dev/null; echo end`)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "end" {
			continue
		}
		f := strings.Fields(l)
		if len(f) != 2 || f[1] != "0" {
			t.Errorf("not masked / read-only: %q", l)
		}
	}
}

func TestBindsAndExtraFiles(t *testing.T) {
	requireRoot(t)
	code := t.TempDir()
	if err := os.WriteFile(filepath.Join(code, "handler.py"), []byte("print('hello from handler')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rw := t.TempDir()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := shell(t, `python3 /var/task/handler.py; touch /var/task/x 2>/dev/null && echo WROTE-RO; echo rw > /data/f; echo via-fd3 >&3; ls /proc/self/fd | tr '\n' ' '`, func(c *Config) {
		c.Binds = []Bind{{Source: code, Target: "/var/task"}, {Source: rw, Target: "/data", Writable: true}}
		c.ExtraFiles = []*os.File{w}
	})
	w.Close()
	if !strings.Contains(out, "hello from handler") || strings.Contains(out, "WROTE-RO") {
		t.Errorf("binds: %s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(rw, "f")); string(b) != "rw\n" {
		t.Errorf("writable bind: got %q", b)
	}
	buf := make([]byte, 100)
	n, _ := r.Read(buf)
	if string(buf[:n]) != "via-fd3\n" {
		t.Errorf("fd 3: got %q", buf[:n])
	}
	// 0-2, 3 (ExtraFiles), and the one ls opens for /proc/self/fd.
	if fds := strings.Fields(out[strings.LastIndex(out, "\n")+1:]); len(fds) != 5 {
		t.Errorf("open fds in the sandbox: %v (want 0 1 2 3 + ls's own)", fds)
	}
}

func TestBadArgv(t *testing.T) {
	requireRoot(t)
	before := settledLeaks(t)
	_, err := Start(baseConfig("/usr/bin/no-such-binary"))
	var ie *InitError
	if !errors.As(err, &ie) || ie.Step != "exec" || !errors.Is(err, fs.ErrNotExist) ||
		!strings.Contains(err.Error(), "exec /usr/bin/no-such-binary: no such file or directory") {
		t.Errorf("bad argv: %v", err)
	}
	if _, err := Start(baseConfig("relative")); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("relative argv: %v", err)
	}
	if _, err := Start(Config{EnvConfig: EnvConfig{ID: "Bad_ID"}, Process: Process{Argv: []string{sh}}}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("bad id: %v", err)
	}
	if after := countLeaks(t); !slices.Equal(before, after) {
		t.Errorf("failed Start leaked: before %v after %v", before, after)
	}
}

func TestUserNS(t *testing.T) {
	requireRoot(t)
	out := shell(t, `cat /proc/self/uid_map; id -u; echo x > /tmp/x && echo tmp-ok; echo y > /y && echo root-ok; grep -E '^(CapEff|Seccomp):' /proc/self/status`, func(c *Config) { c.OwnUserNS = true })
	f := strings.Fields(out)
	if len(f) < 3 || f[0] != "0" || f[1] != strconv.Itoa(UIDMapBase) || f[2] != "65536" {
		t.Errorf("uid_map: %q", out)
	}
	for _, want := range []string{"tmp-ok", "root-ok", "Seccomp:\t2"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	var s *Sandbox
	cfg := baseConfig(sh, "-c", "sleep 100")
	cfg.OwnUserNS = true
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	st, err := procfs.Status(s.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if got := st["Uid"]; !strings.HasPrefix(got, strconv.Itoa(UIDMapBase)) {
		t.Errorf("host view of the sandbox's uid: %q", got)
	}
}

func TestDestroy(t *testing.T) {
	requireRoot(t)
	cfg := baseConfig(sh, "-c", "sleep 100 & sleep 100 & wait")
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
	ex, err := s.Wait()
	if err != nil || ex.Signal != 9 || ex.OOMKilled {
		t.Errorf("after Destroy: %+v %v", ex, err)
	}
	if _, err := os.Stat(instanceDir(testParent, cfg.ID)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("run dir left: %v", err)
	}
}

// countLeaks returns what a sandbox could leak on the host: processes
// the test started (live descendants and unreaped children), mounts
// under the test parent's run dir, cgroup dirs under the test parent, run
// dirs, fds of the test process.
func countLeaks(t *testing.T) []int {
	t.Helper()
	s := testutil.Take(t, testParent)
	rd, _ := os.ReadDir(filepath.Join(RunDir, testParent))
	return []int{s.Descendants + s.Zombies, s.Mounts, s.Cgroups, len(rd), s.FDs}
}

// checkNoLeaks fails t if countLeaks differs from before.
func checkNoLeaks(t *testing.T, before []int) {
	t.Helper()
	if after := countLeaks(t); !slices.Equal(before, after) {
		t.Errorf("leak [children mounts cgroups rundirs fds]: before %v after %v", before, after)
	}
}

// settledLeaks is countLeaks once earlier tests' background work (an
// adopted env's holder is retired asynchronously) has finished.
func settledLeaks(t *testing.T) []int {
	// Files other tests dropped without closing are closed by finalizers
	// at some GC: let that happen now, not in the middle of this test.
	runtime.GC()
	runtime.GC()
	prev := countLeaks(t)
	for range 100 {
		time.Sleep(20 * time.Millisecond)
		cur := countLeaks(t)
		if slices.Equal(prev, cur) {
			return cur
		}
		prev = cur
	}
	return prev
}

func TestNoLeaks(t *testing.T) {
	requireRoot(t)
	before := settledLeaks(t)
	for i := range 6 {
		cfg := baseConfig(sh, "-c", "sleep 100 & echo x > /tmp/f; sleep 100")
		cfg.OwnUserNS = i%2 == 1
		cfg.Network = []Network{NetworkNone, NetworkNone, NetworkHost}[i%3]
		s, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Destroy(); err != nil {
			t.Fatal(err)
		}
	}
	checkNoLeaks(t, before)
}

func TestSweep(t *testing.T) {
	requireRoot(t)
	parent := testParent + "-sweep"
	var ss []*Sandbox
	for range 2 {
		cfg := baseConfig(sh, "-c", "sleep 100")
		cfg.CgroupParent = parent
		s, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	// As if the daemon died: nobody calls Destroy.
	n, err := Sweep(parent)
	if err != nil || n != 2 {
		t.Errorf("Sweep = %d, %v; want 2", n, err)
	}
	for _, s := range ss {
		select {
		case <-s.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("sandbox survived Sweep")
		}
		_ = s.Destroy()
	}
	if _, err := os.Stat(filepath.Join(RunDir, parent)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("run dir left after Sweep: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(testutil.CgroupFile(parent, "pids", "pids.max", "pids.max"))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("cgroup parent left after Sweep: %v", err)
	}
}

func TestPhases(t *testing.T) {
	requireRoot(t)
	s, err := Start(baseConfig("/bin/true"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	var names []string
	for _, p := range s.Phases() {
		names = append(names, p.Name)
		if p.D < 0 {
			t.Errorf("negative phase %v", p)
		}
	}
	want := []string{"cgroup", "spawn", "join", "config", "rootfs", "net", "ready", "send", "process", "security", "exec"}
	if !slices.Equal(names, want) {
		t.Errorf("phases %v, want %v", names, want)
	}
	if ex, _ := s.Wait(); ex.Code != 0 {
		t.Errorf("/bin/true: %+v", ex)
	}
}

func BenchmarkStartDestroy(b *testing.B) {
	requireRoot(b)
	for _, userns := range []bool{false, true} {
		b.Run(fmt.Sprintf("userns=%v", userns), func(b *testing.B) {
			per := map[string][]time.Duration{}
			var order []string
			for b.Loop() {
				cfg := baseConfig("/bin/true")
				cfg.OwnUserNS = userns
				s, err := Start(cfg)
				if err != nil {
					b.Fatal(err)
				}
				for _, p := range s.Phases() {
					if _, ok := per[p.Name]; !ok {
						order = append(order, p.Name)
					}
					per[p.Name] = append(per[p.Name], p.D)
				}
				s.Wait()
				t := time.Now()
				if err := s.Destroy(); err != nil {
					b.Fatal(err)
				}
				if _, ok := per["destroy"]; !ok {
					order = append(order, "destroy")
				}
				per["destroy"] = append(per["destroy"], time.Since(t))
			}
			for _, n := range order {
				d := per[n]
				sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
				b.ReportMetric(float64(d[len(d)/2].Microseconds()), n+"-us")
			}
		})
	}
}

// TestDevices: CAP_MKNOD (in Docker's default set) lets a sandbox create
// a node for a host device (its disk), but the device cgroup must keep it
// from opening it; the sandbox's own /dev nodes work.
func TestDevices(t *testing.T) {
	requireRoot(t)
	typ, maj, min, ok := openableDevice(t)
	if !ok {
		testutil.Missing(t, "no host device outside cgroup.DeviceRules that root can open")
	}
	t.Logf("trying host device %s %d:%d", typ, maj, min)
	out := shell(t, fmt.Sprintf(`mknod /dev-node %s %d %d && echo MADE; `+
		`%s -c 'import os; os.open("/dev-node", os.O_RDONLY|os.O_NONBLOCK|os.O_NOCTTY); print("OPENED")' 2>/dev/null; `+
		`echo x >/dev/null && head -c 4 /dev/urandom | wc -c; echo end`, typ, maj, min, python))
	if !strings.Contains(out, "MADE") {
		t.Fatalf("mknod failed (CAP_MKNOD is in Docker's set):\n%s", out)
	}
	if strings.Contains(out, "OPENED") {
		t.Fatalf("sandbox opened the host's device %s %d:%d:\n%s", typ, maj, min, out)
	}
	if !strings.Contains(out, "4\nend") {
		t.Fatalf("/dev/urandom unusable:\n%s", out)
	}
}

// openableDevice finds a device of the host, a block device if it can,
// that cgroup.DeviceRules does not allow and that this (root) process can
// open through a node of its own making: with one it cannot open (an outer
// container's device cgroup) the check would pass vacuously.
func openableDevice(t *testing.T) (typ string, maj, min uint32, ok bool) {
	node := filepath.Join(t.TempDir(), "node")
	for _, kind := range []struct {
		typ, dir string
		mode     uint32
	}{{"b", "/sys/dev/block", unix.S_IFBLK}, {"c", "/sys/dev/char", unix.S_IFCHR}} {
		devs, _ := os.ReadDir(kind.dir)
		for _, d := range devs {
			if _, err := fmt.Sscanf(d.Name(), "%d:%d", &maj, &min); err != nil || deviceAllowed(kind.typ, maj, min) {
				continue
			}
			_ = os.Remove(node)
			if err := unix.Mknod(node, kind.mode|0o600, int(unix.Mkdev(maj, min))); err != nil {
				continue
			}
			if fd, err := unix.Open(node, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0); err == nil {
				unix.Close(fd)
				return kind.typ, maj, min, true
			}
		}
	}
	return "", 0, 0, false
}

// deviceAllowed is whether cgroup.DeviceRules let a sandbox read device
// typ maj:min (the last matching rule decides, as the kernel's list does).
func deviceAllowed(typ string, maj, min uint32) bool {
	allowed := false
	for _, r := range cgroup.DeviceRules {
		if (r.Type == "a" || r.Type == typ) && (*r.Major == -1 || *r.Major == int64(maj)) &&
			(*r.Minor == -1 || *r.Minor == int64(min)) && strings.Contains(r.Access, "r") {
			allowed = r.Allow
		}
	}
	return allowed
}

// An earlier run (or another tool) may leave the state root above RunDir
// 0700; root of a user namespace (an unprivileged host uid) could not
// then reach its overlay ("bind .../merged: permission denied").
func TestUserNSStateRoot0700(t *testing.T) {
	requireRoot(t)
	top := filepath.Dir(RunDir)
	if err := os.MkdirAll(top, 0o711); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(top)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(top, st.Mode().Perm()) })
	if err := os.Chmod(top, 0o700); err != nil {
		t.Fatal(err)
	}
	if out := shell(t, "echo in-userns", func(c *Config) { c.OwnUserNS = true }); !strings.Contains(out, "in-userns") {
		t.Errorf("output: %q", out)
	}
	if st, err := os.Stat(top); err != nil || st.Mode().Perm() != 0o711 {
		t.Errorf("state root %s after Start: %v %v; want 0711", top, st.Mode().Perm(), err)
	}
}

// mkRunParent adds the search bits from the dir it makes up to the state
// root and stops there: it widens no read bit, and nothing above.
func TestMkRunParent(t *testing.T) {
	tmp := t.TempDir()
	if err := os.Chmod(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	old := RunDir
	t.Cleanup(func() { RunDir = old })
	RunDir = filepath.Join(tmp, "state", "sandbox")
	top := filepath.Dir(RunDir)
	if err := os.Mkdir(top, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(RunDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(RunDir, 0o750); err != nil { // umask
		t.Fatal(err)
	}
	parent := filepath.Join(RunDir, "p")
	if err := mkRunParent(parent); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]fs.FileMode{parent: 0o711, RunDir: 0o751, top: 0o711, tmp: 0o700} {
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", dir, got, want)
		}
	}
}
