package ptrace

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tickerRig is a frozen tickers.c template (testdata/tickers.c) and the
// pipes its clones answer on (their fds 0 and 1, the template's 3 and 4).
type tickerRig struct {
	leader  *Tracee
	states  []ThreadState // the leader's first
	cin     *os.File
	coutF   *os.File
	cout    *bufio.Reader
	threads int // re-created per clone: the tickers and the server
}

func newTickerRig(tb testing.TB, threads int) *tickerRig {
	tb.Helper()
	requireTracing(tb)
	bin := filepath.Join(tb.TempDir(), "tickers")
	if out, err := exec.Command("gcc", "-O2", "-Wall", "-pthread", "-o", bin, "testdata/tickers.c").CombinedOutput(); err != nil {
		tb.Fatalf("gcc: %v\n%s", err, out)
	}
	reqR, reqW := pipe(tb)
	respR, respW := pipe(tb)
	inR, inW := pipe(tb)
	outR, outW := pipe(tb)
	cmd := exec.Command(bin, fmt.Sprint(threads))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
	cmd.ExtraFiles = []*os.File{reqR, respW}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	for _, f := range []*os.File{inR, outW, reqR, respW} {
		f.Close()
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		for _, f := range []*os.File{inW, outR, reqW, respR} {
			f.Close()
		}
	})
	outR.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := bufio.NewReader(outR).ReadString('\n'); err != nil || line != "ready\n" {
		tb.Fatalf("tickers said %q, %v", line, err)
	}
	// Frozen with the main thread in its long sleep (clock_nanosleep) and
	// the server in read.
	waitSyscall(tb, cmd.Process.Pid, unix.SYS_CLOCK_NANOSLEEP)
	tr := newTracer(tb)
	g, err := tr.SeizeGroup(cmd.Process.Pid)
	if err != nil {
		skipIfPtraceDenied(tb, err)
		tb.Fatal(err)
	}
	tb.Cleanup(func() { g.Detach() })
	states, err := g.States()
	if err != nil {
		tb.Fatal(err)
	}
	if len(states) != threads+2 {
		tb.Fatalf("seized %d threads, want %d", len(states), threads+2)
	}
	return &tickerRig{leader: g.Leader(), states: states, cin: reqW, coutF: respR, cout: bufio.NewReader(respR), threads: threads + 1}
}

// waitSyscall polls /proc/PID/syscall until the main thread of pid
// sleeps in syscall nr.
func waitSyscall(tb testing.TB, pid int, nr int) {
	tb.Helper()
	want := fmt.Sprint(nr, " ")
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", pid)); err == nil && strings.HasPrefix(string(b), want) {
			return
		}
	}
	tb.Fatalf("process %d never blocked in syscall %d", pid, nr)
}

// fork makes one clone of the template in a PID namespace of its own (so
// its threads get their tids back): fork, adopt its pipes, re-create the
// other threads (AddThreadClones, RestoreThreads), give the main thread
// the template's registers and let everything go. It returns the clone's
// pid.
func (r *tickerRig) fork() (int, error) {
	b := NewBatch()
	b.Add(unix.SYS_WAIT4, Lit(-1), Lit(0), Lit(unix.WNOHANG|unix.WALL), Lit(0)).With(RepeatWhilePositive | IgnoreError)
	clone := b.Add(unix.SYS_CLONE, Lit(int64(unix.SIGCHLD|unix.CLONE_NEWPID)), Lit(0), Lit(0), Lit(0), Lit(0)).With(ForkPoint)
	b.Add(unix.SYS_DUP2, Lit(3), Lit(0))
	b.Add(unix.SYS_DUP2, Lit(4), Lit(1))
	clones := AddThreadClones(b, r.states[1:])
	for _, c := range clones {
		addr, err := r.leader.DataAddr(b, c.TID)
		if err != nil {
			return 0, err
		}
		c.SetTIDPointer(b, uint64(addr))
	}
	var pid int
	err := r.leader.Tracer().Do(func() error {
		res, err := r.leader.Exec(b)
		if err != nil {
			return fmt.Errorf("template batch: %w", err)
		}
		if res.Status != StatusForkParent || len(res.Children) != 1 {
			return fmt.Errorf("template batch: %v, children %v", res.Status, res.Children)
		}
		child, err := r.leader.Adopt(res.Children[0])
		if err != nil {
			unix.Kill(res.Children[0], unix.SIGKILL)
			return err
		}
		pid = child.Pid()
		cres, err := child.Resume(b)
		if err != nil {
			unix.Kill(pid, unix.SIGKILL)
			return fmt.Errorf("child batch: %w", err)
		}
		if cres.Status != StatusDone || cres.Value(clone) != 0 || len(cres.Children) != r.threads {
			unix.Kill(pid, unix.SIGKILL)
			return fmt.Errorf("child batch: %v, children %v", cres.Status, cres.Children)
		}
		threads, err := child.RestoreThreads(r.states[1:], cres.Children, ThreadSetup{})
		if err != nil {
			return err
		}
		if err := threads.Release(); err != nil {
			return err
		}
		if err := child.SetRegs(r.states[0].Regs); err != nil {
			unix.Kill(pid, unix.SIGKILL)
			return err
		}
		return child.Detach()
	})
	return pid, err
}

// check asks the live clone whether every ticker ticks.
func (r *tickerRig) check() (string, error) {
	if _, err := r.cin.Write([]byte{'c'}); err != nil {
		return "", err
	}
	r.coutF.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := r.cout.ReadString('\n')
	return strings.TrimSpace(line), err
}

// hog keeps n processes spinning on the CPUs until the test ends: the
// re-created threads are set up and released under load, where their
// stops and runs interleave the most.
func hog(tb testing.TB, n int) {
	for range n {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
}

// TestRecreatedThreadsTick: clone after clone of a template with nine
// ticker threads (each blocked in its own kind of wait when frozen) has
// every re-created thread running its own code again, with CPU hogs
// beside it; a thread left stopped or parked forever answers "stuck".
func TestRecreatedThreadsTick(t *testing.T) {
	rig := newTickerRig(t, 9)
	hog(t, runtime.NumCPU())
	n := 200
	if testing.Short() {
		n = 20
	}
	for i := range n {
		pid, err := rig.fork()
		if err != nil {
			t.Fatalf("fork %d: %v", i, err)
		}
		got, err := rig.check()
		unix.Kill(pid, unix.SIGKILL)
		if err != nil || got != "ok" {
			t.Fatalf("fork %d (pid %d): answered %q, %v; want every ticker running", i, pid, got, err)
		}
	}
}

// BenchmarkRecreateThreads: one clone per op of a template of 3 or 11
// threads (1 or 9 tickers, the server, the main thread), until the
// clone runs; the difference is what re-creating 8 threads costs.
func BenchmarkRecreateThreads(b *testing.B) {
	for _, n := range []int{1, 9} {
		b.Run(fmt.Sprintf("threads=%d", n+2), func(b *testing.B) {
			rig := newTickerRig(b, n)
			for range b.N {
				pid, err := rig.fork()
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if got, err := rig.check(); err != nil || got != "ok" {
					b.Fatalf("clone %d answered %q, %v", pid, got, err)
				}
				unix.Kill(pid, unix.SIGKILL)
				b.StartTimer()
			}
		})
	}
}
