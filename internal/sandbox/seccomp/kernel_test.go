package seccomp

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/testutil"
)

// victimEnv makes the test binary act as the victim: it installs a filter
// on its locked main thread, makes system calls and reports each result on
// stdout as "name=errno" (0 for success).
const victimEnv = "CATALYZER_SECCOMP_VICTIM"

func TestMain(m *testing.M) {
	if mode := os.Getenv(victimEnv); mode != "" {
		os.Exit(victim(mode))
	}
	os.Exit(m.Run())
}

func init() {
	if os.Getenv(victimEnv) != "" {
		runtime.LockOSThread() // init runs on the main thread; keep it
	}
}

func victim(mode string) int {
	runtime.LockOSThread()
	opts := Options{}
	if mode == "trace" {
		opts.Trace = []string{"keyctl"}
	}
	prog, err := DefaultProgram(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "victim:", err)
		return 2
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "victim: no_new_privs:", err)
		return 2
	}
	if err := Install(prog); err != nil {
		fmt.Fprintln(os.Stderr, "victim:", err)
		return 3
	}
	var out strings.Builder
	report := func(name string, errno syscall.Errno) { fmt.Fprintf(&out, "%s=%d\n", name, int(errno)) }
	r := func(nr uintptr, a ...uintptr) syscall.Errno {
		a = append(a, 0, 0, 0, 0, 0, 0)
		_, _, e := unix.RawSyscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
		return e
	}
	switch mode {
	case "x32":
		r(x32Bit | unix.SYS_GETPID) // must kill the process
		fmt.Println("survived")
		return 0
	default:
		report("getpid", r(unix.SYS_GETPID))
		report("unshare", r(unix.SYS_UNSHARE, unix.CLONE_NEWNS))
		report("mount", r(unix.SYS_MOUNT, 0, 0, 0, 0, 0))
		report("keyctl", r(unix.SYS_KEYCTL, 0, 0, 0, 0, 0))
		report("clone3", r(unix.SYS_CLONE3, 0, 0))
		report("personality", r(unix.SYS_PERSONALITY, 1))
	}
	if _, err := unix.Write(1, []byte(out.String())); err != nil {
		return 4
	}
	return 0
}

func runVictim(t *testing.T, mode string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), victimEnv+"="+mode)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 3 {
		if strings.Contains(stderr.String(), "not supported") {
			testutil.Missing(t, "seccomp filters unavailable on this kernel: %s", stderr.String())
		}
	}
	if err != nil && stderr.Len() > 0 {
		t.Logf("victim stderr: %s", stderr.String())
	}
	return stdout.String(), err
}

func requireSeccomp(t *testing.T) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skipf("programs are compiled for x86_64; running on %s", runtime.GOARCH)
	}
	if _, err := os.Stat("/proc/sys/kernel/seccomp/actions_avail"); err != nil {
		testutil.Missing(t, "seccomp filters unavailable (no /proc/sys/kernel/seccomp/actions_avail): %v", err)
	}
}

func TestKernelDefaultProgram(t *testing.T) {
	requireSeccomp(t)
	out, err := runVictim(t, "default")
	if err != nil {
		t.Fatalf("victim: %v (stdout %q)", err, out)
	}
	want := fmt.Sprintf("getpid=0\nunshare=%d\nmount=%d\nkeyctl=%d\nclone3=%d\npersonality=%d\n",
		unix.EPERM, unix.EPERM, unix.EPERM, unix.ENOSYS, unix.EPERM)
	if out != want {
		t.Fatalf("victim reported\n%s\nwant\n%s", out, want)
	}
}

func TestKernelTrace(t *testing.T) {
	requireSeccomp(t)
	out, err := runVictim(t, "trace")
	if err != nil {
		t.Fatalf("victim: %v (stdout %q)", err, out)
	}
	// Without a tracer attached, SECCOMP_RET_TRACE fails the call with ENOSYS.
	if !strings.Contains(out, fmt.Sprintf("keyctl=%d\n", unix.ENOSYS)) || !strings.Contains(out, "getpid=0\n") {
		t.Fatalf("victim reported\n%s", out)
	}
}

func TestKernelX32Killed(t *testing.T) {
	requireSeccomp(t)
	out, err := runVictim(t, "x32")
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("victim survived an x32 syscall: err %v, stdout %q", err, out)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != unix.SIGSYS {
		t.Fatalf("victim ended with %v, want killed by SIGSYS", ee)
	}
}
