package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

func TestMain(m *testing.M) {
	// A container's init is this test binary re-executed.
	MaybeInit()
	os.Exit(m.Run())
}

// busyboxBundle is a bundle whose root holds a static busybox and its
// applets, running sh -c script.
func busyboxBundle(t *testing.T, script string, mut func(*specs.Spec)) string {
	t.Helper()
	testutil.RequiresRoot(t)
	bb, err := exec.LookPath("busybox")
	if err != nil {
		testutil.Missing(t, "busybox not installed (install busybox-static)")
	}
	dir := writeBundle(t, nil)
	t.Cleanup(func() { _ = cgroup.RemoveParent("catalyzer-oci-test") })
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "cat", "echo", "id", "hostname", "mkdir", "grep", "touch", "ls", "ulimit", "sleep", "true"} {
		_ = os.Symlink("busybox", filepath.Join(root, "bin", a))
	}
	nss := []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}, {Type: specs.UTSNamespace},
		{Type: specs.IPCNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.CgroupNamespace}}
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"/bin/sh", "-c", script}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{Namespaces: nss, CgroupsPath: fmt.Sprintf("/catalyzer-oci-test/%s", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))},
	}
	if mut != nil {
		mut(s)
	}
	b, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runBundle creates, starts and waits for the container (our child here)
// and returns its output and exit status; the container is deleted.
func runBundle(t *testing.T, dir string) (string, int) {
	t.Helper()
	r := Root{Dir: t.TempDir()}
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	id := "t" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if err := r.Create(id, CreateOpts{Bundle: dir, Stdout: out, Stderr: out}); err != nil {
		t.Fatal(err)
	}
	c, err := r.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Delete(true); err != nil {
			t.Error(err)
		}
		if _, err := r.Load(id); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("after delete: %v, want ErrNotFound", err)
		}
	}()
	if st := c.Status(); st != Created {
		t.Fatalf("status after create %s", st)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(c.Pid(), &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st != Stopped {
		t.Errorf("status after exit %s", st)
	}
	data, _ := os.ReadFile(out.Name())
	return string(data), ws.ExitStatus()
}

// config.json is honoured: user, hostname, env, cwd, rlimits,
// capabilities, no_new_privs, read-only root, masked and read-only
// paths, sysctl, seccomp, the cgroup's limits, every hook kind.
func TestConfigHonoured(t *testing.T) {
	hookDir := t.TempDir()
	hook := func(name string) specs.Hook {
		return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "cat > " + filepath.Join(hookDir, name)}}
	}
	limit := int64(48 << 20)
	errno := uint(unix.EXDEV)
	script := `id -u; id -g; hostname; echo cwd=$(pwd); echo env=$FOO; ulimit -n;
grep -E '^(CapEff|NoNewPrivs)' /proc/self/status;
touch /ro 2>/dev/null && echo root-writable || echo root-readonly;
[ -c /proc/timer_list ] && echo timer_list-masked;
echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys-writable || echo sys-readonly;
cat /proc/sys/kernel/msgmax;
mkdir /tmp/x 2>&1 | grep -q 'Invalid cross-device' && echo seccomp-denied;
cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null;
exit 7`
	dir := busyboxBundle(t, script, func(s *specs.Spec) {
		s.Hostname = "honoured"
		s.Process.User = specs.User{UID: 1000, GID: 1001}
		s.Process.Cwd = "/tmp"
		s.Process.Env = append(s.Process.Env, "FOO=bar")
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 123, Hard: 456}}
		s.Process.NoNewPrivileges = true
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"},
			Inheritable: []string{"CAP_KILL"}, Ambient: []string{"CAP_KILL"}}
		s.Root.Readonly = true
		s.Linux.MaskedPaths = []string{"/proc/timer_list"}
		s.Linux.ReadonlyPaths = []string{"/proc/sys"}
		s.Linux.Sysctl = map[string]string{"kernel.msgmax": "12345"}
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
		s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86_64},
			Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: &errno}}}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}})
		s.Hooks = &specs.Hooks{
			//lint:ignore SA1019 prestart is deprecated but still honoured
			Prestart: []specs.Hook{hook("prestart")}, CreateRuntime: []specs.Hook{hook("createRuntime")},
			CreateContainer: []specs.Hook{hook("createContainer")}, StartContainer: []specs.Hook{{Path: "/bin/true"}},
			Poststart: []specs.Hook{hook("poststart")}, Poststop: []specs.Hook{hook("poststop")},
		}
	})
	out, code := runBundle(t, dir)
	if code != 7 {
		t.Errorf("exit %d, want 7; output:\n%s", code, out)
	}
	for _, want := range []string{"1000\n1001\n", "honoured\n", "cwd=/tmp\n", "env=bar\n", "123\n",
		"CapEff:\t0000000000000020", "NoNewPrivs:\t1", "root-readonly", "timer_list-masked", "sys-readonly", "12345\n",
		"seccomp-denied", fmt.Sprint(limit)} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, h := range []string{"prestart", "createRuntime", "createContainer", "poststart", "poststop"} {
		data, err := os.ReadFile(filepath.Join(hookDir, h))
		if err != nil {
			t.Errorf("hook %s did not run: %v", h, err)
			continue
		}
		var st specs.State
		if err := json.Unmarshal(data, &st); err != nil || st.ID == "" {
			t.Errorf("hook %s got state %q: %v", h, data, err)
		}
	}
}

// A failing step of the init fails create with its name, and leaves
// nothing: no state dir, no cgroup.
func TestCreateFailureUndone(t *testing.T) {
	dir := busyboxBundle(t, "true", func(s *specs.Spec) { s.Process.Args = []string{"/bin/nonexistent"} })
	r := Root{Dir: t.TempDir()}
	err := r.Create("fail", CreateOpts{Bundle: dir})
	if err == nil || !strings.Contains(err.Error(), "/bin/nonexistent") {
		t.Fatalf("create: %v, want an error naming /bin/nonexistent", err)
	}
	if ents, _ := os.ReadDir(r.Dir); len(ents) != 0 {
		t.Errorf("state left: %v", ents)
	}
	if m := testutil.CgroupDirs("catalyzer-oci-test/testcreatefailureundone"); len(m) != 0 {
		t.Errorf("cgroups left: %v", m)
	}
}

// The kernel facts that block dev.catalyzer.boot=fork for a template
// with containerd's default capabilities (docs/KUBERNETES.md, "Fork"),
// checked on this kernel: a process with euid 0 and no capability (a
// template's fork, before it drops more) cannot make a PID namespace,
// but can enter a user namespace root made for it (owner uid 0, parent
// the initial namespace) and that namespace's network and UTS ones; and
// it can make a PID namespace together with a user namespace of its own.
func TestKernelForkCapabilityFacts(t *testing.T) {
	testutil.RequiresRoot(t)
	for _, bin := range []string{"setpriv", "unshare", "nsenter", "sleep"} {
		if _, err := exec.LookPath(bin); err != nil {
			testutil.Missing(t, "%s not installed (util-linux)", bin)
		}
	}
	capless := func(args ...string) ([]byte, error) {
		return exec.Command("setpriv", append([]string{"--inh-caps=-all", "--bounding-set=-all", "--ambient-caps=-all"}, args...)...).CombinedOutput()
	}
	if out, err := capless("unshare", "--pid", "--fork", "true"); err == nil {
		t.Errorf("a capless process made a PID namespace (%s): the fork blocker is gone on this kernel", out)
	}
	if out, err := capless("unshare", "--user", "--pid", "--fork", "true"); err != nil {
		t.Errorf("CLONE_NEWUSER|CLONE_NEWPID without capabilities: %v\n%s", err, out)
	}
	// U: made by root (owner 0), with network and UTS namespaces of its own.
	u := exec.Command("unshare", "--user", "--net", "--uts", "--fork", "sleep", "30")
	if err := u.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = u.Process.Kill(); _ = u.Wait() }()
	// unshare --fork: the namespaces are its child's.
	var pid int
	for range 1000 {
		if kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", u.Process.Pid, u.Process.Pid)); len(strings.TrimSpace(string(kids))) > 0 {
			fmt.Sscan(string(kids), &pid)
			break
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 1e6}, nil)
	}
	if pid == 0 {
		t.Fatal("unshare's child did not appear")
	}
	// Identity maps, written by root (the runtime's part): uid 0 in U is
	// the template's uid, so that exec keeps the capabilities in U.
	for _, m := range []string{"uid_map", "gid_map"} {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/%s", pid, m), []byte("0 0 4294967295\n"), 0); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
	ns := func(n string) string { return fmt.Sprintf("--%s=/proc/%d/ns/%s", n, pid, n) }
	out, err := capless("nsenter", "--preserve-credentials", ns("user"), ns("net"), ns("uts"), "hostname", "in-u")
	if err != nil {
		t.Errorf("a capless euid-0 process entering root's user namespace and its net/uts namespaces: %v\n%s", err, out)
	}
}

// dev.catalyzer.boot=fork is refused at create, with the reason and
// what to do instead, and leaves nothing.
func TestCreateForkRefused(t *testing.T) {
	dir := busyboxBundle(t, "true", func(s *specs.Spec) {
		s.Annotations = map[string]string{AnnotationBoot: "fork", AnnotationTemplateID: "tpl"}
	})
	r := Root{Dir: t.TempDir()}
	err := r.Create("fork1", CreateOpts{Bundle: dir})
	if !errors.Is(err, errdefs.ErrNotSupported) || !strings.Contains(err.Error(), "CAP_SYS_ADMIN") || !strings.Contains(err.Error(), AnnotationImage) {
		t.Fatalf("create of a fork: %v, want not supported naming CAP_SYS_ADMIN and the restore alternative", err)
	}
	if ents, _ := os.ReadDir(r.Dir); len(ents) != 0 {
		t.Errorf("state left: %v", ents)
	}
}
