package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/sandbox/sandboxinit"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// joinerC is what the sfork batch does to join an Env, without ptrace.
const joinerC = `/* joiner: what the sfork batch does to join an Env, without ptrace.
 * usage: joiner PIDFD [late|noreap]
 * The parent unshares a PID namespace and forks; the child (PID 1 there)
 * joins the env with setns(PIDFD, mnt|net|uts|ipc|cgroup), mounts /proc, prints
 * what it sees, reads one byte of stdin and exits 7. The parent prints
 * "child <host pid>" and reaps it (noreap: only after stdin's EOF).
 * late: the child reads a byte before it joins. */
#define _GNU_SOURCE
#include <dirent.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

static void list(const char *dir, const char *tag, int digits) {
	DIR *d = opendir(dir);
	struct dirent *e;
	printf("%s", tag);
	while (d && (e = readdir(d)))
		if (digits ? (e->d_name[0] >= '0' && e->d_name[0] <= '9') : e->d_name[0] != '.')
			printf(" %s", e->d_name);
	printf("\n");
	if (d)
		closedir(d);
}

int main(int argc, char **argv) {
	const char *mode = argc > 2 ? argv[2] : "";
	int pidfd = atoi(argv[1]);
	char c;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (unshare(CLONE_NEWPID)) { perror("unshare"); return 2; }
	pid_t child = fork();
	if (child < 0) { perror("fork"); return 2; }
	if (child > 0) {
		close(pidfd);
		printf("child %d\n", child);
		if (!strcmp(mode, "noreap")) {
			siginfo_t si;
			waitid(P_PID, child, &si, WEXITED | WNOWAIT);
			while (read(0, &c, 1) > 0)
				;
		}
		int st;
		waitpid(child, &st, 0);
		return 0;
	}
	if (!strcmp(mode, "late") && read(0, &c, 1) != 1) _exit(5);
	if (setns(pidfd, CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP)) { perror("setns"); _exit(3); }
	close(pidfd);
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) { perror("mount proc"); _exit(4); }
	char h[256] = {0};
	gethostname(h, sizeof h - 1);
	printf("host %s\n", h);
	printf("self %d\n", getpid());
	list("/proc", "pids", 1);
	list("/sys/class/net", "ifs", 0);
	FILE *f = fopen("/lowerfile", "r");
	char buf[64] = {0};
	if (f && fgets(buf, sizeof buf, f)) printf("lower %s", buf); else printf("lower missing\n");
	f = fopen("/etc/joined", "w");
	printf("write %s\n", f && fputs("x", f) >= 0 && fclose(f) == 0 ? "ok" : "failed");
	printf("ready\n");
	if (read(0, &c, 1) != 1) _exit(6);
	_exit(7);
}
`

// buildJoiner compiles joinerC into t's temp dir, or skips.
func buildJoiner(t *testing.T) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		testutil.Missing(t, "needs gcc to build the setns test helper (a Go process is multi-threaded and cannot setns into a mount namespace)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "joiner.c")
	if err := os.WriteFile(src, []byte(joinerC), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "joiner")
	if out, err := exec.Command(gcc, "-O1", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

// lowerTmpfs returns a directory on its own tmpfs (an overlay lower layer
// must not lie below another layer of the same file system, such as "/")
// holding /lowerfile.
func lowerTmpfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0755"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(dir, "lowerfile"), []byte("from-lower\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func envConfig() EnvConfig {
	return EnvConfig{ID: newID(), CgroupParent: testParent}
}

// joiner is a running joinerC process.
type joiner struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	child int
}

func startJoiner(t *testing.T, bin string, e *Env, mode string) *joiner {
	t.Helper()
	cmd := exec.Command(bin, "3", mode)
	cmd.ExtraFiles = []*os.File{e.PidFD()}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	j := &joiner{cmd: cmd, in: in, lines: make(chan string, 100)}
	t.Cleanup(func() { in.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// The parent's "child <pid>" and the child's lines interleave.
	child := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var pid int
			if _, err := fmt.Sscanf(sc.Text(), "child %d", &pid); err == nil {
				child <- pid
				continue
			}
			j.lines <- sc.Text()
		}
		close(j.lines)
	}()
	select {
	case j.child = <-child:
	case <-time.After(20 * time.Second):
		t.Fatal("joiner did not fork")
	}
	return j
}

func (j *joiner) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-j.lines:
		if !ok {
			t.Fatal("joiner: EOF")
		}
		return l
	case <-time.After(20 * time.Second):
		t.Fatal("joiner: no output")
	}
	return ""
}

// untilReady collects the joined child's report.
func (j *joiner) untilReady(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	for {
		l := j.next(t)
		if l == "ready" {
			return m
		}
		k, v, _ := strings.Cut(l, " ")
		m[k] = v
	}
}

func alive(pid int) bool { return unix.Kill(pid, 0) == nil }

// waitRetired waits up to d for e's holder to be retired (killed and
// reaped), reporting whether it was.
func waitRetired(e *Env, d time.Duration) bool {
	select {
	case <-e.retired:
		return true
	case <-time.After(d):
		return false
	}
}

func waitExit(t *testing.T, s *Sandbox) Exit {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("adopted process did not exit")
	}
	ex, err := s.Wait()
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return ex
}

// TestEnvHolder looks at an env through the holder's namespaces.
func TestEnvHolder(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		testutil.Missing(t, "needs nsenter")
	}
	lower := lowerTmpfs(t)
	cfg := envConfig()
	cfg.Lowers = []string{lower}
	cfg.Hostname = "env-host"
	e, err := NewEnv(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Release()
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(e.cmd.Process.Pid), "-m", "-u", "-n", "-i", "--",
		sh, "-c", `cat /lowerfile; echo new > /lowerfile2; echo x > /etc/envfile && echo wrote; ls -A /proc | wc -l; test -d /proc && echo procdir; hostname; ls /sys/class/net | tr '\n' ' '; echo; grep -c . /sys/firmware/* 2>/dev/null | wc -l; awk '$2=="/" {print $3}' /proc/self/mounts 2>/dev/null; echo end`).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v\n%s", err, out)
	}
	want := "from-lower\nwrote\n0\nprocdir\nenv-host\nlo \n0\nend\n"
	if string(out) != want {
		t.Errorf("inside the env:\n%s\nwant:\n%s", out, want)
	}
	for _, p := range []string{filepath.Join(lower, "lowerfile2"), "/lowerfile2", "/etc/envfile"} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("env write reached %s: %v", p, err)
		}
	}
	if h, _ := os.Hostname(); h == "env-host" {
		t.Error("host's hostname changed")
	}
	// The holder is in the env's cgroup (its cgroup namespace is rooted
	// there), and nothing else is before Adopt.
	if procs, err := e.cg.Procs(); err != nil || !slices.Equal(procs, []int{e.cmd.Process.Pid}) {
		t.Errorf("env cgroup procs before Adopt: %v %v, want only the holder %d", procs, err, e.cmd.Process.Pid)
	}
	var names []string
	for _, p := range e.Phases() {
		names = append(names, p.Name)
	}
	if want := []string{"cgroup", "spawn", "send", "config", "rootfs", "net", "ready"}; !slices.Equal(names, want) {
		t.Errorf("phases %v, want %v", names, want)
	}
}

func TestEnvJoinAdopt(t *testing.T) {
	requireRoot(t)
	bin := buildJoiner(t)
	lower := lowerTmpfs(t)
	before := settledLeaks(t)
	func() {
		cfg := envConfig()
		cfg.Lowers = []string{lower}
		cfg.Hostname = "forked"
		e, err := NewEnv(cfg)
		if err != nil {
			t.Fatal(err)
		}
		holder := e.cmd.Process.Pid
		j := startJoiner(t, bin, e, "")
		got := j.untilReady(t)
		if got["host"] != "forked" || got["self"] != "1" || got["pids"] != "1" || got["ifs"] != "lo" ||
			got["lower"] != "from-lower" || got["write"] != "ok" {
			t.Errorf("joined child saw %v", got)
		}
		s, err := e.Adopt(j.child)
		if err != nil {
			t.Fatal(err)
		}
		if s.Pid() != j.child || s.ID() != cfg.ID {
			t.Errorf("Pid %d ID %s", s.Pid(), s.ID())
		}
		// The holder is retired in the background, off the boot path.
		if !waitRetired(e, 10*time.Second) || alive(holder) {
			t.Errorf("holder %d not retired after Adopt of a joined process", holder)
		}
		if procs, _ := s.cg.Procs(); !slices.Equal(procs, []int{j.child}) {
			t.Errorf("cgroup procs %v, want [%d]", procs, j.child)
		}
		if _, err := e.Adopt(j.child); !errors.Is(err, errdefs.ErrConflict) {
			t.Errorf("second Adopt: %v", err)
		}
		if err := e.Release(); err != nil {
			t.Errorf("Release after Adopt: %v", err)
		}
		j.in.Write([]byte("x"))
		if ex := waitExit(t, s); ex.Code != 7 || ex.Signal != 0 {
			t.Errorf("exit %+v, want code 7", ex)
		}
		if err := s.Destroy(); err != nil {
			t.Fatal(err)
		}
		_ = j.cmd.Wait()
		if _, err := os.Stat(filepath.Join(lower, "etc")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the child's write reached the lower layer")
		}
	}()
	checkNoLeaks(t, before)
}

// TestEnvAdoptZombie: the exit status of a child its parent has not
// reaped (a template that has not run its wait4 yet).
func TestEnvAdoptZombie(t *testing.T) {
	requireRoot(t)
	bin := buildJoiner(t)
	e, err := NewEnv(envConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Release()
	j := startJoiner(t, bin, e, "noreap")
	j.untilReady(t)
	s, err := e.Adopt(j.child)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	j.in.Write([]byte("x"))
	if ex := waitExit(t, s); ex.Code != 7 {
		t.Errorf("zombie exit %+v, want code 7", ex)
	}
	if st, err := procfs.Stat(j.child); err != nil || st.State != 'Z' {
		t.Errorf("child was reaped already; the zombie path was not tested: %+v, %v", st, err)
	}
	j.in.Close()
}

// TestEnvAdoptBeforeJoin: Adopt before the join batch ran keeps the holder
// until the process has joined; Destroy kills it.
func TestEnvAdoptBeforeJoin(t *testing.T) {
	requireRoot(t)
	bin := buildJoiner(t)
	before := settledLeaks(t)
	func() {
		e, err := NewEnv(envConfig())
		if err != nil {
			t.Fatal(err)
		}
		holder := e.cmd.Process.Pid
		j := startJoiner(t, bin, e, "late")
		s, err := e.Adopt(j.child)
		if err != nil {
			t.Fatal(err)
		}
		if !alive(holder) {
			t.Fatal("holder retired before the process joined")
		}
		j.in.Write([]byte("j"))
		if got := j.untilReady(t); got["self"] != "1" {
			t.Errorf("late join: %v", got)
		}
		if !waitRetired(e, 10*time.Second) || alive(holder) {
			t.Error("holder not retired after the join")
		}
		if err := s.Destroy(); err != nil {
			t.Fatal(err)
		}
		if ex, err := s.Wait(); ex.Signal != unix.SIGKILL || ex.Code != -1 || err != nil {
			t.Errorf("after Destroy: %+v %v", ex, err)
		}
		_ = j.cmd.Wait()
	}()
	checkNoLeaks(t, before)
}

func TestEnvErrors(t *testing.T) {
	requireRoot(t)
	before := settledLeaks(t)
	if _, err := NewEnv(EnvConfig{ID: "Bad"}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("bad id: %v", err)
	}
	if _, err := NewEnv(EnvConfig{ID: newID(), Lowers: []string{"/no/such"}, CgroupParent: testParent}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("missing lower: %v", err)
	}
	// A lower below the root on the same file system (the host's "/"
	// as an explicit Rootfs): overlayfs refuses it.
	cfg := envConfig()
	cfg.Rootfs, cfg.Lowers = "/", []string{t.TempDir()}
	var ie *InitError
	if _, err := NewEnv(cfg); !errors.As(err, &ie) || ie.Step != "rootfs" {
		t.Errorf("overlapping lower: %v", err)
	}
	e, err := NewEnv(envConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Adopt(1 << 30); err == nil {
		t.Error("Adopt of a missing pid succeeded")
	}
	if err := e.Release(); err != nil {
		t.Fatal(err)
	}
	if err := e.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if _, err := e.Adopt(os.Getpid()); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Adopt after Release: %v", err)
	}
	checkNoLeaks(t, before)
}

func TestEnvSweep(t *testing.T) {
	requireRoot(t)
	parent := testParent + "-envsweep"
	cfg := envConfig()
	cfg.CgroupParent = parent
	e, err := NewEnv(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Release()
	if n, err := Sweep(parent); err != nil || n != 1 {
		t.Errorf("Sweep = %d, %v; want 1", n, err)
	}
	for _, p := range []string{filepath.Join(RunDir, parent), filepath.Dir(testutil.CgroupFile(parent, "pids", "pids.max", "pids.max"))} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left after Sweep: %v", p, err)
		}
	}
}

func TestPool(t *testing.T) {
	requireRoot(t)
	before := settledLeaks(t)
	var n, failNext, blockNext atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	failNext.Store(1)
	build := func() (*Env, error) {
		n.Add(1)
		if failNext.CompareAndSwap(1, 0) {
			return nil, errors.New("injected failure")
		}
		if blockNext.CompareAndSwap(1, 0) {
			close(entered)
			<-release
		}
		return NewEnv(envConfig())
	}
	p := NewPool(2, 1, build, (*Env).Release)
	waitReady := func(want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for p.Stats().Ready < want {
			if time.Now().After(deadline) {
				t.Fatalf("pool not refilled: %+v", p.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitReady(2)
	blockNext.Store(1) // the refill after the next Get blocks in build
	var got []*Env
	for range 2 {
		e, fromPool, err := p.Get()
		if err != nil || !fromPool {
			t.Fatalf("Get = %v, %v", fromPool, err)
		}
		got = append(got, e)
	}
	<-entered
	e, fromPool, err := p.Get()
	if err != nil || fromPool {
		t.Fatalf("Get from a drained pool = %v, %v; want an on-demand env", fromPool, err)
	}
	got = append(got, e)
	close(release)
	waitReady(2)
	st := p.Stats()
	if st.Ready != 2 || st.Taken != 2 || st.OnDemand != 1 || st.Failures != 1 || st.Built != 4 || st.MeanBuild <= 0 {
		t.Errorf("stats %+v", st)
	}
	t.Logf("pool stats: %+v", st)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := p.Get(); !errors.Is(err, errdefs.ErrShutdown) {
		t.Errorf("Get after Close: %v", err)
	}
	for _, e := range got {
		if err := e.Release(); err != nil {
			t.Error(err)
		}
	}
	checkNoLeaks(t, before)
}

func BenchmarkNewEnv(b *testing.B) {
	requireRoot(b)
	per := map[string][]time.Duration{}
	var order []string
	add := func(n string, d time.Duration) {
		if _, ok := per[n]; !ok {
			order = append(order, n)
		}
		per[n] = append(per[n], d)
	}
	for b.Loop() {
		t := time.Now()
		e, err := NewEnv(envConfig())
		if err != nil {
			b.Fatal(err)
		}
		add("total", time.Since(t))
		for _, p := range e.Phases() {
			add(p.Name, p.D)
		}
		t = time.Now()
		if err := e.Release(); err != nil {
			b.Fatal(err)
		}
		add("release", time.Since(t))
	}
	for _, n := range order {
		d := per[n]
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		b.ReportMetric(float64(d[len(d)/2].Microseconds()), n+"-us")
	}
}

// capsetAndMount is run by python3 in a template: raise CAP_SYS_ADMIN into
// the effective set with capset, then try what seccomp must still deny.
const capsetAndMount = `
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
class Hdr(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]
def status():
    return {l.split(":")[0]: l.split(":")[1].strip() for l in open("/proc/self/status") if l.startswith("Cap")}
s = status()
print("at-exec", s["CapEff"], s["CapPrm"], s["CapBnd"], s["CapInh"], s["CapAmb"])
h = Hdr(0x20080522, 0)
d = (Data * 2)()
if libc.capget(ctypes.byref(h), d) != 0:
    print("capget failed", ctypes.get_errno()); sys.exit(1)
d[0].effective &= ~(1 << 21)
r = libc.capset(ctypes.byref(h), d)
print("drop", r, ctypes.get_errno(), status()["CapEff"])
d[0].effective |= 1 << 21
r = libc.capset(ctypes.byref(h), d)
print("raise", r, ctypes.get_errno(), status()["CapEff"])
r = libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, None)
print("mount", r, ctypes.get_errno())
r = libc.unshare(0x00020000)
print("unshare", r, ctypes.get_errno())
r = libc.syscall(56, 0x00020000 | 17, 0, 0, 0, 0)  # clone(CLONE_NEWNS|SIGCHLD)
print("clone-newns", r, ctypes.get_errno())
r = libc.syscall(308, 3, 0)  # setns(3, 0)
print("setns", r, ctypes.get_errno())
open("/etc/template-file", "w").write("from-template\n")
print("done", flush=True)
time.sleep(100)
`

func TestTemplateCaps(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cfg := baseConfig(python, "-c", capsetAndMount)
	cfg.Template = true
	cfg.Stdout, cfg.Stderr = out, out
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	var b []byte
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(string(b), "done\n") {
		select {
		case <-s.Done():
			b, _ = os.ReadFile(out.Name())
			t.Fatalf("template exited:\n%s", b)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no output:\n%s", b)
		}
		b, _ = os.ReadFile(out.Name())
	}
	out2 := string(b)
	caps := fmt.Sprintf("%016x", capMask(Capabilities()))
	withAdmin := fmt.Sprintf("%016x", capMask(append(Capabilities(), "SYS_ADMIN")))
	// execve as uid 0 sets the effective set to the permitted one (see
	// doc.go): the template starts with CAP_SYS_ADMIN effective, may drop
	// and raise it, and seccomp denies what it would allow either way.
	for _, want := range []string{
		// bounding, permitted, effective, inheritable (none), ambient
		fmt.Sprintf("at-exec %s %s %s 0000000000000000 0000000000000000\n", withAdmin, withAdmin, withAdmin),
		"drop 0 0 " + caps + "\n", "raise 0 0 " + withAdmin + "\n",
		"mount -1 1\n", "unshare -1 1\n", "clone-newns -1 1\n", "setns -1 1\n",
	} {
		if !strings.Contains(out2, want) {
			t.Errorf("want %q in:\n%s", want, out2)
		}
	}
	if st := statusOf(t, s.Pid()); st["Seccomp"] != "2" || st["NoNewPrivs"] != "1" {
		t.Errorf("template not filtered:\n%s", st)
	}

	upper := s.UpperDir()
	if upper == "" {
		t.Fatal("no UpperDir for a template")
	}
	if b, err := os.ReadFile(filepath.Join(upper, "etc", "template-file")); err != nil || string(b) != "from-template\n" {
		t.Errorf("UpperDir/etc/template-file: %q %v", b, err)
	}
	if _, err := os.Stat("/etc/template-file"); err == nil {
		t.Error("template write reached the host's /etc")
	}

	// The template's upper as an env's lower: a fork sees the file.
	e, err := NewEnv(EnvConfig{ID: newID(), CgroupParent: testParent, Lowers: []string{upper}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := exec.Command("nsenter", "-t", strconv.Itoa(e.cmd.Process.Pid), "-m", "--", "/bin/cat", "/etc/template-file").CombinedOutput()
	if err != nil || string(got) != "from-template\n" {
		t.Errorf("env over the template's upper: %q %v", got, err)
	}
	if err := e.Release(); err != nil {
		t.Fatal(err)
	}

	if err := s.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(upper)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("template run dir left after Destroy: %v", err)
	}
	if mps, _ := sandboxinit.MountsUnder(filepath.Dir(upper)); len(mps) > 0 {
		t.Errorf("template upper still mounted after Destroy")
	}
	// Not a template: no host-visible upper.
	s2, err := Start(baseConfig(sh, "-c", "sleep 100"))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Destroy()
	if s2.UpperDir() != "" {
		t.Errorf("UpperDir of a plain sandbox: %q", s2.UpperDir())
	}
}

func statusOf(t *testing.T, pid int) procfs.StatusInfo {
	t.Helper()
	st, err := procfs.Status(pid)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestTemplateSweep: a killed daemon's template leaves a mounted upper
// tmpfs; Sweep unmounts and removes it.
func TestTemplateSweep(t *testing.T) {
	requireRoot(t)
	parent := testParent + "-tplsweep"
	cfg := baseConfig(sh, "-c", "echo x > /etc/f; sleep 100")
	cfg.CgroupParent = parent
	cfg.Template = true
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if n, err := Sweep(parent); err != nil || n != 1 {
		t.Errorf("Sweep = %d, %v", n, err)
	}
	if mps, _ := sandboxinit.MountsUnder(filepath.Join(RunDir, parent)); len(mps) > 0 {
		t.Errorf("template upper still mounted after Sweep")
	}
	if _, err := os.Stat(filepath.Join(RunDir, parent)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("run dir left after Sweep: %v", err)
	}
}

// TestEnvInUserNS: a template in a user namespace of its own, and an env
// built for its forks inside that namespace: every namespace of the env
// is owned by the template's user namespace, its holder is root there
// (the template's uid base on the host), and it sees the template's
// upper layer.
func TestEnvInUserNS(t *testing.T) {
	requireRoot(t)
	const base = 300000
	// The template says "written" once its file is in its upper layer.
	cfg := baseConfig(sh, "-c", "echo from-template > /template-file; echo written; exec sleep 100")
	cfg.Template, cfg.OwnUserNS, cfg.UIDBase = true, true, base
	written, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer written.Close()
	cfg.Stdout = w
	s, err := Start(cfg)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	users, err := s.OpenUserNS()
	if err != nil {
		t.Fatal(err)
	}
	defer users.Close()
	if users.UIDBase() != base {
		t.Errorf("UIDBase %d, want %d", users.UIDBase(), base)
	}
	upper := s.UpperDir()
	if line, err := bufio.NewReader(written).ReadString('\n'); err != nil || line != "written\n" {
		t.Fatalf("template: %q %v", line, err)
	}
	e, err := NewEnv(EnvConfig{ID: newID(), CgroupParent: testParent, Lowers: []string{upper}, UserNS: users})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Release()
	holder := e.cmd.Process.Pid
	tplUser := nsIno(t, s.Pid(), "user")
	if got := nsIno(t, holder, "user"); got != tplUser {
		t.Errorf("holder in user namespace %d, want the template's %d", got, tplUser)
	}
	for _, n := range envNSNames {
		if got := nsOwner(t, holder, n); got != tplUser {
			t.Errorf("env %s namespace owned by user namespace %d, want the template's %d", n, got, tplUser)
		}
	}
	if uid, err := statusOf(t, holder).Uint("Uid", 10); err != nil || uid != uint64(base) {
		t.Errorf("holder uid %v, want %d", uid, base)
	}
	got, err := exec.Command("nsenter", "-t", strconv.Itoa(holder), "-m", "--", "/bin/cat", "/template-file").CombinedOutput()
	if err != nil || string(got) != "from-template\n" {
		t.Errorf("env over the template's upper: %q %v", got, err)
	}
}

// nsIno is the inode of pid's namespace of kind n.
func nsIno(t *testing.T, pid int, n string) uint64 {
	t.Helper()
	id, err := procfs.Namespace(pid, n)
	if err != nil {
		t.Fatal(err)
	}
	return id.Ino
}

// nsOwner is the inode of the user namespace that owns pid's namespace
// of kind n (NS_GET_USERNS).
func nsOwner(t *testing.T, pid int, n string) uint64 {
	t.Helper()
	f, err := procfs.OpenNamespace(pid, n)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const nsGetUserns = 0xb701 // _IO(0xb7, 0x1)
	fd, err := unix.IoctlRetInt(int(f.Fd()), nsGetUserns)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
