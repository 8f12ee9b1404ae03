package sandboxinit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/sandbox/initwire"
	"github.com/catalyzer/catalyzer/internal/sandbox/seccomp"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// The test binary is its own init helper: run re-executes it with
// initwire.InitEnv set, as package sandbox re-executes the daemon.
func TestMain(m *testing.M) {
	if IsHelper() {
		Main() // never returns
	}
	os.Exit(m.Run())
}

func TestStepErr(t *testing.T) {
	err := stepErr("rootfs", fmt.Errorf("open x: %w", unix.ENOENT), "bind %s", "/a")
	var ie *initwire.InitError
	if !errors.As(err, &ie) {
		t.Fatalf("%T is not an *InitError", err)
	}
	if ie.Step != "rootfs" || ie.Errno != unix.ENOENT || ie.Msg != "bind /a: open x: no such file or directory" {
		t.Errorf("got %+v", ie)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%v does not unwrap to fs.ErrNotExist", err)
	}
	// An error that carries no errno keeps Errno 0.
	if err := stepErr("config", errors.New("bad"), "read"); err.(*initwire.InitError).Errno != 0 {
		t.Errorf("errno of a plain error: %+v", err)
	}
}

func TestMkMountpoint(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(tmp, "root", "a", "b")
	if err := MkMountpoint(tmp, dst); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dst); err != nil || !st.IsDir() {
		t.Errorf("mount point of a dir: %v %v", st, err)
	}
	dst = filepath.Join(tmp, "root", "c", "f")
	if err := MkMountpoint(file, dst); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dst); err != nil || !st.Mode().IsRegular() || st.Size() != 0 {
		t.Errorf("mount point of a file: %v %v", st, err)
	}
	// An existing file stays as it is (a second bind of the same target).
	if err := MkMountpoint(file, file); err != nil {
		t.Errorf("existing target: %v", err)
	}
	if err := MkMountpoint(filepath.Join(tmp, "missing"), filepath.Join(tmp, "m")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing source: %v", err)
	}
}

func TestMountsUnder(t *testing.T) {
	ms, err := MountsUnder("/")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ms, "/") {
		t.Errorf("mounts under /: %q; want / among them", ms)
	}
	ms, err = MountsUnder(t.TempDir())
	if err != nil || len(ms) != 0 {
		t.Errorf("mounts under a fresh dir: %q %v", ms, err)
	}
}

// helperRun is one init helper started by the test as the host starts
// it: in new namespaces, its config socket on fd 3, its status pipe on 4.
type helperRun struct {
	cmd     *exec.Cmd
	config  *os.File
	reports *initwire.Reports
	status  *os.File
}

func startHelper(t *testing.T, flags uintptr, cfg initwire.Config) *helperRun {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "config"), os.NewFile(uintptr(fds[1]), "config-helper")
	stR, stW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	// No ParentEnv: that is for a helper nsenter started (package
	// sandbox); here, as for a sandbox, Pdeathsig is set at clone.
	cmd.Env = []string{initwire.InitEnv + "=1"}
	cmd.ExtraFiles = []*os.File{theirs, stW}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	stW.Close()
	h := &helperRun{cmd: cmd, config: ours, reports: initwire.NewReports(stR), status: stR}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		ours.Close()
		stR.Close()
	})
	if err := initwire.Send(int(ours.Fd()), cfg, nil); err != nil {
		t.Fatal(err)
	}
	return h
}

// phases names the marks.
func phases(ms []initwire.Mark) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Phase)
	}
	return out
}

// lowerDir is a root for the overlay: the host's /usr comes in as a
// read-only bind, the usrmerge links point into it.
func lowerDir(t *testing.T) string {
	lower := t.TempDir()
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		if err := os.Symlink("usr/"+l, filepath.Join(lower, l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(lower, 0o755); err != nil {
		t.Fatal(err)
	}
	return lower
}

// newNS are the namespaces package sandbox gives a sandbox of the host's
// user namespace.
const newNS = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET

func requireHelperHost(t *testing.T) {
	t.Helper()
	testutil.RequiresRoot(t)
	if _, err := os.Stat("/usr/bin/sh"); err != nil {
		testutil.Missing(t, "needs /usr/bin/sh: %v", err)
	}
}

func testConfig(t *testing.T) initwire.Config {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	return initwire.Config{
		Lower: lowerDir(t), Dir: dir, UpperBytes: 8 << 20, TmpBytes: 4 << 20, ShmBytes: 1 << 20,
		Binds:    []initwire.Bind{{Source: "/usr", Target: "/usr"}},
		Masked:   []string{"/proc/cpuinfo", "/sys/firmware"},
		Readonly: []string{"/proc/sys"},
		Hostname: "sbxinit-test", NewNet: true,
	}
}

// checkScript prints what the test asserts on, one key=value a line.
const checkScript = `
echo hostname=$(cat /proc/sys/kernel/hostname)
echo cwd=$(pwd)
echo nofile=$(ulimit -n)
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -d ' \t' | tr : =
echo lo=$(cat /sys/class/net/lo/flags)
echo cpuinfo=$(wc -c < /proc/cpuinfo)
echo firmware=$(ls -A /sys/firmware | wc -l)
touch /usr/x 2>/dev/null && echo usr=rw || echo usr=ro
touch /proc/sys/x 2>/dev/null && echo procsys=rw || echo procsys=ro
mkdir /sys/x 2>/dev/null && echo sys=rw || echo sys=ro
echo y > /y && echo root=rw
echo x > /tmp/x && echo tmp=rw
[ -c /dev/null ] && echo devnull=char
echo devfd=$(readlink /dev/fd)
echo cgroup=$(cut -d: -f3 /proc/self/cgroup | sort -u | tr '\n' ,)
echo pid=$$
echo fds=$(ls /proc/self/fd | tr '\n' ,)
echo extra >&3
`

// The helper's steps for real, in new namespaces, with no package sandbox
// around it: the marks come in the documented order, then the program
// runs in the root, with the security and the files the Process asked.
func TestHelperSteps(t *testing.T) {
	requireHelperHost(t)
	caps := []capability.Cap{capability.CAP_CHOWN, capability.CAP_KILL}
	prog, err := seccomp.DefaultProgram(seccomp.Options{Caps: []string{"CAP_CHOWN", "CAP_KILL"}})
	if err != nil {
		t.Fatal(err)
	}
	h := startHelper(t, newNS, testConfig(t))
	marks, ready, err := h.reports.Next()
	if err != nil || !ready {
		t.Fatalf("env part: ready %v, %v", ready, err)
	}
	if got, want := phases(marks), []string{"config", "rootfs", "net"}; !slices.Equal(got, want) {
		t.Errorf("marks %q, want %q", got, want)
	}

	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	extraR, extraW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer extraR.Close()
	p := initwire.Process{Argv: []string{"/bin/sh", "-c", checkScript}, Env: []string{"PATH=/usr/bin:/bin"},
		Cwd: "/tmp", Rlimits: []initwire.Rlimit{{Resource: unix.RLIMIT_NOFILE, Soft: 77, Hard: 77}},
		Caps: caps, Seccomp: initwire.EncodeFilter(prog), Stdout: true, Stderr: true, NExtra: 1}
	if err := initwire.Send(int(h.config.Fd()), p, []int{int(out.Fd()), int(out.Fd()), int(extraW.Fd())}); err != nil {
		t.Fatal(err)
	}
	extraW.Close()
	marks, ready, err = h.reports.Next()
	if err != nil || ready {
		t.Fatalf("process part: ready %v, %v", ready, err)
	}
	// The status pipe closed at execve: EOF, after these two marks.
	if got, want := phases(marks), []string{"process", "security"}; !slices.Equal(got, want) {
		t.Errorf("marks %q, want %q", got, want)
	}
	if err := h.cmd.Wait(); err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("program: %v; output:\n%s", err, b)
	}
	extra := make([]byte, 16)
	n, _ := extraR.Read(extra)
	if got := string(extra[:n]); got != "extra\n" {
		t.Errorf("fd 3 got %q", got)
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Errorf("program said: %s", l)
			continue
		}
		got[k] = v
	}
	capSet := fmt.Sprintf("%016x", 1<<capability.CAP_CHOWN|1<<capability.CAP_KILL)
	want := map[string]string{
		"hostname": "sbxinit-test", "cwd": "/tmp", "nofile": "77",
		"CapInh": strings.Repeat("0", 16), "CapPrm": capSet, "CapEff": capSet, "CapBnd": capSet, "CapAmb": strings.Repeat("0", 16),
		"NoNewPrivs": "1", "Seccomp": "2",
		"lo":      "0x9", // IFF_UP|IFF_LOOPBACK
		"cpuinfo": "0", "firmware": "0", "usr": "ro", "procsys": "ro", "sys": "ro", "root": "rw", "tmp": "rw",
		"devnull": "char", "devfd": "/proc/self/fd",
		"cgroup": "/,", // a cgroup namespace of its own, rooted at its cgroup
		"pid":    "1",
		// 0-3 and ls's own directory: the config socket and the status
		// pipe did not survive execve.
		"fds": "0,1,2,3,4,",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
}

// A failed step is one *InitError with its step and errno, then exit 127.
func TestHelperStepFails(t *testing.T) {
	requireHelperHost(t)
	for _, tc := range []struct {
		name string
		mod  func(*initwire.Config, *initwire.Process)
		step string
	}{
		{"bind source", func(c *initwire.Config, _ *initwire.Process) {
			c.Binds = append(c.Binds, initwire.Bind{Source: "/nonexistent-src", Target: "/x"})
		}, "rootfs"},
		{"cwd", func(_ *initwire.Config, p *initwire.Process) { p.Cwd = "/nonexistent-cwd" }, "security"},
		{"argv", func(_ *initwire.Config, p *initwire.Process) { p.Argv = []string{"/nonexistent-prog"} }, "exec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			p := initwire.Process{Argv: []string{"/bin/true"}, Cwd: "/"}
			tc.mod(&cfg, &p)
			h := startHelper(t, newNS, cfg)
			_, ready, err := h.reports.Next()
			if err == nil && ready {
				if err := initwire.Send(int(h.config.Fd()), p, nil); err != nil {
					t.Fatal(err)
				}
				_, _, err = h.reports.Next()
			}
			var ie *initwire.InitError
			if !errors.As(err, &ie) || ie.Step != tc.step || !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("got %v (%#v), want an ENOENT InitError of step %q", err, ie, tc.step)
			}
			var ee *exec.ExitError
			if err := h.cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 127 {
				t.Errorf("helper exit: %v, want 127", err)
			}
		})
	}
}

// An env's holder reports ready and becomes the pause binary with no
// capability left (a joiner's setns by pidfd needs that), and no /proc.
func TestHelperHold(t *testing.T) {
	requireHelperHost(t)
	cfg := testConfig(t)
	cfg.Hold = true
	h := startHelper(t, newNS&^unix.CLONE_NEWPID, cfg)
	marks, ready, err := h.reports.Next()
	if err != nil || !ready {
		t.Fatalf("ready %v, %v", ready, err)
	}
	if got, want := phases(marks), []string{"config", "rootfs", "net"}; !slices.Equal(got, want) {
		t.Errorf("marks %q, want %q", got, want)
	}
	// The holder closes its status pipe just before execveat: EOF here
	// means it is (about to be) the pause binary.
	if _, ready, err := h.reports.Next(); err != nil || ready {
		t.Fatalf("after ready: %v %v", ready, err)
	}
	// Capabilities are dropped before ready is reported: no race here.
	pid := h.cmd.Process.Pid
	st, err := procfs.Status(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if st[k] != strings.Repeat("0", 16) {
			t.Errorf("holder %s = %q, want none", k, st[k])
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/root/proc", pid))
	if err != nil || len(ents) != 0 {
		t.Errorf("holder's /proc: %d entries, %v; want an empty dir", len(ents), err)
	}
	// The execveat that follows the pipe's close is no event a non-tracer
	// can wait on: look for the pause binary until it is there, or the
	// helper died (exit 127 on a failed exec).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err == nil && strings.HasPrefix(exe, "/memfd:catalyzer-env-holder") {
			break
		}
		if st, serr := procfs.Stat(pid); serr != nil || st.State == 'Z' || time.Now().After(deadline) {
			t.Fatalf("holder never became the pause binary: exe %q %v", exe, err)
		}
	}
}
