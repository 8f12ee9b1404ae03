package ptrace

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

func TestTracerDoRunsOnOneThread(t *testing.T) {
	tr := newTracer(t)
	for i := 0; i < 10; i++ {
		var tid, inner int
		if err := tr.Do(func() error {
			tid = unix.Gettid()
			// Nested Do runs inline instead of deadlocking.
			return tr.Do(func() error { inner = unix.Gettid(); return nil })
		}); err != nil {
			t.Fatal(err)
		}
		if tid != tr.TID() || inner != tid {
			t.Fatalf("Do ran on thread %d (nested %d), tracer thread is %d", tid, inner, tr.TID())
		}
	}
	tr.Close()
	if err := tr.Do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close: %v, want ErrClosed", err)
	}
}

func TestSeizeInterruptDetach(t *testing.T) {
	v := startVictim(t, "echo")
	if got, want := v.ask(t), fmt.Sprintf("pong %d", v.pid); got != want {
		t.Fatalf("before: %q, want %q", got, want)
	}
	waitBlockedInRead(t, v.pid)
	tr := newTracer(t)
	fds := countFDs(t)
	for round := 0; round < 3; round++ {
		tc := seize(t, tr, v.pid)
		r, err := tc.Regs()
		if err != nil {
			t.Fatal(err)
		}
		// Stopped inside read(0, ...) on a pipe: the kernel shows
		// -ERESTARTSYS and orig_rax = read.
		if int64(r.Rax) != -errRestartSys || r.Orig_rax != unix.SYS_READ {
			t.Fatalf("rax %d orig_rax %d, want -ERESTARTSYS and read", int64(r.Rax), r.Orig_rax)
		}
		n := r
		if !NormalizeRestart(&n) || n.Rax != unix.SYS_READ || n.Rip != r.Rip-2 {
			t.Fatalf("NormalizeRestart: rax %d rip %#x (was %#x)", n.Rax, n.Rip, r.Rip)
		}
		insn := make([]byte, 2)
		if err := tc.ReadMem(uintptr(n.Rip), insn); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(insn, []byte{0x0f, 0x05}) {
			t.Fatalf("normalised rip points at % x, want a syscall instruction", insn)
		}
		if NormalizeRestart(&n) {
			t.Fatal("NormalizeRestart changed registers twice")
		}
		if err := tc.Detach(); err != nil {
			t.Fatal(err)
		}
		if got, want := v.ask(t), fmt.Sprintf("pong %d", v.pid); got != want {
			t.Fatalf("after detach %d: %q, want %q", round, got, want)
		}
		waitBlockedInRead(t, v.pid)
	}
	if n := countFDs(t); n != fds {
		t.Errorf("%d fds open after three seize/detach rounds, %d before: /proc/PID/mem leaked", n, fds)
	}
}

func countFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestNormalizeRestartCases(t *testing.T) {
	for _, c := range []struct {
		rax, orig int64
		wantRax   uint64
		changed   bool
	}{
		{-errRestartSys, unix.SYS_READ, unix.SYS_READ, true},
		{-errRestartNoIntr, unix.SYS_WAIT4, unix.SYS_WAIT4, true},
		{-errRestartNoHand, unix.SYS_PAUSE, unix.SYS_PAUSE, true},
		{-errRestartRestartBlock, unix.SYS_NANOSLEEP, unix.SYS_RESTART_SYSCALL, true},
		{-4, unix.SYS_READ, 1<<64 - 4, false},
		{-errRestartSys, -1, 1<<64 - errRestartSys, false},
	} {
		r := Regs{Rax: uint64(c.rax), Orig_rax: uint64(c.orig), Rip: 0x1000}
		changed := NormalizeRestart(&r)
		if changed != c.changed || r.Rax != c.wantRax || (changed && r.Rip != 0xffe) || (!changed && r.Rip != 0x1000) {
			t.Errorf("rax %d orig %d: changed %v rax %d rip %#x", c.rax, c.orig, changed, int64(r.Rax), r.Rip)
		}
	}
}

// A Go program is multi-threaded from its first instructions (sysmon, GC
// workers): Seize must refuse it rather than freeze one thread of many.
func TestSeizeRefusesMultiThreadedGo(t *testing.T) {
	requireTracing(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			testutil.Missing(t, "needs the go command to build the Go victim")
		}
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	os.WriteFile(src, []byte("package main\n\nimport \"time\"\n\nfunc main() { time.Sleep(time.Hour) }\n"), 0o644)
	bin := filepath.Join(dir, "govictim")
	build := exec.Command(goBin, "build", "-o", bin, src)
	build.Dir = dir
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for {
		if n, _ := Threads(pid); n > 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Go victim never started a second thread")
		}
		time.Sleep(time.Millisecond)
	}
	tr := newTracer(t)
	tc, err := tr.Seize(pid)
	if err == nil {
		tc.Detach()
		t.Fatal("Seize of a multi-threaded Go process succeeded")
	}
	if !errors.Is(err, ErrMultiThreaded) || !errors.Is(err, errdefs.ErrNotSupported) {
		t.Fatalf("Seize: %v, want ErrMultiThreaded", err)
	}
	want := fmt.Sprintf("process %d has ", pid)
	if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "seize them all (SeizeGroup)") {
		t.Fatalf("message %q", err)
	}
	t.Logf("refused: %v", err)
}

func TestInjectedSyscall(t *testing.T) {
	v := startVictim(t, "echo")
	tr := newTracer(t)
	tc := seize(t, tr, v.pid)

	// Before the executor exists: vDSO syscall + PTRACE_SYSCALL.
	rt := tc.RoundTrips()
	pid, err := tc.Syscall(unix.SYS_GETPID)
	if err != nil || int(pid) != v.pid {
		t.Fatalf("getpid: %d, %v; want %d", pid, err, v.pid)
	}
	t.Logf("injected syscall via the vDSO: %d round trips", tc.RoundTrips()-rt)

	if err := tc.InstallExecutor(); err != nil {
		t.Fatal(err)
	}
	rt = tc.RoundTrips()
	pid, err = tc.Syscall(unix.SYS_GETPID)
	if err != nil || int(pid) != v.pid {
		t.Fatalf("getpid: %d, %v; want %d", pid, err, v.pid)
	}
	if n := tc.RoundTrips() - rt; n != 1 {
		t.Errorf("injected syscall through the executor took %d round trips, want 1", n)
	}

	// openat(AT_FDCWD, "<missing>") with the path written into the
	// executor's batch area.
	addr, _ := tc.ExecutorRegion()
	path := append([]byte("/nonexistent/ptrace-test"), 0)
	scratch := addr + execBatchOff
	if err := tc.WriteMem(scratch, path); err != nil {
		t.Fatal(err)
	}
	atFDCWD := -100
	_, err = tc.Syscall(unix.SYS_OPENAT, uintptr(atFDCWD), scratch, unix.O_RDONLY, 0)
	var se *SyscallError
	if !errors.Is(err, unix.ENOENT) || !errors.As(err, &se) {
		t.Fatalf("openat of a missing file: %v, want ENOENT", err)
	}
	t.Logf("error text: %v", err)

	if err := tc.RemoveExecutor(); err != nil {
		t.Fatal(err)
	}
	maps, err := procfs.Maps(v.pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		if m.Start <= uint64(addr) && uint64(addr) < m.End {
			t.Fatalf("executor region %#x still mapped: %v", addr, m)
		}
	}
	if pid, err := tc.Syscall(unix.SYS_GETPID); err != nil || int(pid) != v.pid {
		t.Fatalf("getpid after RemoveExecutor: %d, %v", pid, err)
	}

	if err := tc.Detach(); err != nil {
		t.Fatal(err)
	}
	if got, want := v.ask(t), fmt.Sprintf("pong %d", v.pid); got != want {
		t.Fatalf("after injection: %q, want %q", got, want)
	}
}

// The xmm victim keeps a value in xmm8 across its blocking read; reading
// and writing back the registers and the xstate must not disturb it, and
// a changed xmm8 must reach it.
func TestRegsXStateRoundTrip(t *testing.T) {
	v := startVictim(t, "xmm")
	if got := v.ask(t); got != "xmm8=1122334455667788" {
		t.Fatalf("before: %q", got)
	}
	waitBlockedInRead(t, v.pid)
	tr := newTracer(t)
	const xmm8 = 160 + 8*16 // FXSAVE legacy area: xmm0 at 160, 16 bytes each

	tc := seize(t, tr, v.pid)
	r, err := tc.Regs()
	if err != nil {
		t.Fatal(err)
	}
	if r.Fs_base == 0 {
		t.Error("fs_base is 0 in a glibc process")
	}
	if err := tc.SetRegs(r); err != nil {
		t.Fatal(err)
	}
	xs, err := tc.XState()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("xstate: %d bytes", len(xs))
	if got := fmt.Sprintf("%x", xs[xmm8:xmm8+8]); got != "8877665544332211" {
		t.Fatalf("xmm8 in the xstate: %s", got)
	}
	if err := tc.SetXState(xs); err != nil {
		t.Fatal(err)
	}
	// Injected code in between must not disturb it either.
	if _, err := tc.Syscall(unix.SYS_GETPID); err != nil {
		t.Fatal(err)
	}
	tc.Detach()
	if got := v.ask(t); got != "xmm8=1122334455667788" {
		t.Fatalf("after a round trip: %q", got)
	}
	waitBlockedInRead(t, v.pid)

	tc = seize(t, tr, v.pid)
	xs, err = tc.XState()
	if err != nil {
		t.Fatal(err)
	}
	copy(xs[xmm8:], []byte{0xef, 0xbe, 0xad, 0xde, 0xfe, 0xca, 0xfe, 0xca})
	if err := tc.SetXState(xs); err != nil {
		t.Fatal(err)
	}
	tc.Detach()
	if got := v.ask(t); got != "xmm8=cafecafedeadbeef" {
		t.Fatalf("after setting xmm8: %q", got)
	}
}

func TestTracerDoPanics(t *testing.T) {
	tr := newTracer(t)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want boom", r)
			}
		}()
		tr.Do(func() error { panic("boom") })
	}()
	if err := tr.Do(func() error { return nil }); err != nil {
		t.Fatalf("tracer dead after a panic: %v", err)
	}
}

// TestWaitStops walks a tracee through every kind of stop Wait reports.
func TestWaitStops(t *testing.T) {
	v := startVictim(t, "echo")
	tr := newTracer(t)
	tc := seize(t, tr, v.pid)
	next := func(cont func() error, want StopKind, sig unix.Signal) {
		t.Helper()
		if err := cont(); err != nil {
			t.Fatal(err)
		}
		s, err := tc.Wait()
		if err != nil || s.Kind != want || s.Signal != sig {
			t.Fatalf("stop %v, %v; want %v %v", s, err, want, sig)
		}
	}
	sys := func() error { return tc.ContSyscall(0) }
	// The interrupted read is restarted: syscall-entry stop.
	next(sys, StopSyscall, unix.SIGTRAP)
	v.in.Write([]byte("?\n"))
	next(sys, StopSyscall, unix.SIGTRAP) // read returns: exit stop
	r, _ := tc.Regs()
	if r.Orig_rax != unix.SYS_READ || r.Rax != 2 {
		t.Fatalf("read exit: orig_rax %d rax %d", r.Orig_rax, r.Rax)
	}
	cont := func() error { return tc.Cont(0) }
	usr1 := func() error {
		if err := tc.Cont(0); err != nil {
			return err
		}
		return unix.Kill(v.pid, unix.SIGUSR1)
	}
	next(usr1, StopSignal, unix.SIGUSR1) // signal-delivery stop
	stop := func() error {
		if err := tc.Cont(0); err != nil { // suppresses SIGUSR1
			return err
		}
		return unix.Kill(v.pid, unix.SIGSTOP)
	}
	next(stop, StopSignal, unix.SIGSTOP)
	next(func() error { return tc.Cont(unix.SIGSTOP) }, StopGroup, unix.SIGSTOP)
	// Resumed, the victim finishes answering the request it read above.
	if err := cont(); err != nil {
		t.Fatal(err)
	}
	v.rf.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := v.out.ReadString('\n'); err != nil || line != fmt.Sprintf("pong %d\n", v.pid) {
		t.Fatalf("answer %q, %v", line, err)
	}
	unix.Kill(v.pid, unix.SIGKILL)
	s, err := tc.Wait()
	for err == nil && s.Kind != StopKilled { // a pending stop may come first
		t.Logf("stop before the kill: %v", s)
		tc.Cont(0)
		s, err = tc.Wait()
	}
	if err != nil || s.Signal != unix.SIGKILL {
		t.Fatalf("after SIGKILL: %v, %v", s, err)
	}
}
