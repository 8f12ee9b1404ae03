package ptrace

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/testutil"
)

var (
	victimOnce sync.Once
	victimPath string
	victimErr  error
	tmpRoot    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if tmpRoot != "" {
		os.RemoveAll(tmpRoot)
	}
	os.Exit(code)
}

// requireTracing skips unless the test can ptrace its children: root (as
// in CI) on x86-64 with gcc to build the victims.
func requireTracing(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Missing(t, "needs root to ptrace and to write through /proc/PID/mem: run the tests as root, as CI does")
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		testutil.Missing(t, "needs gcc to build the victim processes")
	}
}

// skipIfPtraceDenied turns an EPERM from Seize into a skip (yama
// ptrace_scope 3, a seccomp profile without ptrace).
func skipIfPtraceDenied(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, unix.EPERM) {
		testutil.Missing(t, "ptrace is not permitted here (%v); check /proc/sys/kernel/yama/ptrace_scope", err)
	}
}

// buildVictim compiles testdata/victim.c once per test run.
func buildVictim(t testing.TB) string {
	t.Helper()
	requireTracing(t)
	victimOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ptrace-victims")
		if err != nil {
			victimErr = err
			return
		}
		tmpRoot = dir
		victimPath = filepath.Join(dir, "victim")
		out, err := exec.Command("gcc", "-O2", "-Wall", "-o", victimPath, "testdata/victim.c").CombinedOutput()
		if err != nil {
			victimErr = fmt.Errorf("gcc: %v\n%s", err, out)
		}
	})
	if victimErr != nil {
		t.Fatal(victimErr)
	}
	return victimPath
}

// victim is a running victim process with pipes on its stdin/stdout.
type victim struct {
	cmd *exec.Cmd
	pid int
	in  *os.File // its stdin (write end)
	out *bufio.Reader
	rf  *os.File
}

func pipe(t testing.TB) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return r, w
}

// startVictim starts the victim in mode with extra files as fd 3, 4, ...
// and waits until it blocks in read(0). Cleanup kills it.
func startVictim(t testing.TB, mode string, extra ...*os.File) *victim {
	t.Helper()
	path := buildVictim(t)
	inR, inW := pipe(t)
	outR, outW := pipe(t)
	cmd := exec.Command(path, mode)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
	cmd.ExtraFiles = extra
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	v := &victim{cmd: cmd, pid: cmd.Process.Pid, in: inW, out: bufio.NewReader(outR), rf: outR}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		inW.Close()
		outR.Close()
	})
	waitBlockedInRead(t, v.pid)
	return v
}

// waitBlockedInRead polls /proc/PID/syscall until pid sleeps in read(2).
func waitBlockedInRead(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/syscall")
		if err == nil && strings.HasPrefix(string(b), "0 ") {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("process %d never blocked in read", pid)
}

// ask writes a request on w and reads one line from r (5 s deadline).
func ask(t testing.TB, w *os.File, rf *os.File, r *bufio.Reader) string {
	t.Helper()
	if _, err := w.Write([]byte("?\n")); err != nil {
		t.Fatalf("write request: %v", err)
	}
	rf.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	return strings.TrimSpace(line)
}

func (v *victim) ask(t testing.TB) string { return ask(t, v.in, v.rf, v.out) }

func newTracer(t testing.TB) *Tracer {
	tr := NewTracer()
	t.Cleanup(func() { tr.Close() })
	return tr
}

func seize(t testing.TB, tr *Tracer, pid int, opts ...Option) *Tracee {
	t.Helper()
	tc, err := tr.Seize(pid, opts...)
	if err != nil {
		skipIfPtraceDenied(t, err)
		t.Fatalf("Seize: %v", err)
	}
	t.Cleanup(func() { tc.Detach() })
	return tc
}
