package ptrace

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// forkBatch is the sfork primitive without a sandbox: optionally reap
// zombies left by earlier forks, clone (fork-like) at a ForkPoint, then in
// the child only: move the child's own pipes (fds 3 and 4, passed to the
// template at start) onto stdin/stdout, write a marker, and stop for the
// tracer.
func forkBatch(reap bool) (b *Batch, clone, mark Ref) {
	b = NewBatch()
	if reap {
		b.Add(unix.SYS_WAIT4, Lit(-1), Lit(0), Lit(unix.WNOHANG|unix.WALL), Lit(0)).With(RepeatWhilePositive | IgnoreError)
	}
	clone = b.Add(unix.SYS_CLONE, Lit(int64(unix.SIGCHLD)), Lit(0), Lit(0), Lit(0), Lit(0)).With(ForkPoint)
	b.Add(unix.SYS_DUP2, Lit(3), Lit(0))
	b.Add(unix.SYS_DUP2, Lit(4), Lit(1))
	mark = b.Add(unix.SYS_WRITE, Lit(1), b.String("forked\n"), Lit(7)).With(StopAfter)
	return b, clone, mark
}

// sfork runs b in the template, adopts the child, lets it run its part of
// the batch, loads the template's (normalised) registers into it and lets
// it go. It returns the child's pid and the stops the child cost.
func sfork(tb testing.TB, tc *Tracee, b *Batch, clone, mark Ref, regs Regs) (int, uint64) {
	pid, trips, err := sforkErr(tc, b, clone, mark, regs)
	if err != nil {
		tb.Fatal(err)
	}
	return pid, trips
}

// sforkErr is sfork returning errors, safe to run inside Tracer.Do.
func sforkErr(tc *Tracee, b *Batch, clone, mark Ref, regs Regs) (int, uint64, error) {
	res, err := tc.Exec(b)
	if err != nil {
		return 0, 0, fmt.Errorf("fork batch: %w", err)
	}
	if res.Status != StatusForkParent || len(res.Children) != 1 || int64(res.Children[0]) != res.Value(clone) {
		return 0, 0, fmt.Errorf("fork batch: status %v, clone %d, children %v", res.Status, res.Value(clone), res.Children)
	}
	child, err := tc.Adopt(res.Children[0])
	if err != nil {
		return 0, 0, err
	}
	cres, err := child.Resume(b)
	if err != nil {
		return 0, 0, fmt.Errorf("child part of the batch: %w", err)
	}
	if cres.Status != StatusPaused || cres.Index != mark.Index() || cres.Value(mark) != 7 || cres.Value(clone) != 0 {
		return 0, 0, fmt.Errorf("child: status %v at %d, results %v", cres.Status, cres.Index, cres.Values)
	}
	if err := child.SetRegs(regs); err != nil {
		return 0, 0, err
	}
	if err := child.Detach(); err != nil {
		return 0, 0, err
	}
	return child.Pid(), child.RoundTrips(), nil
}

type forkRig struct {
	v         *victim
	tc        *Tracee
	regs      Regs
	childIn   *os.File // requests to forked children (their fd 0)
	childOutF *os.File
	childOut  *bufio.Reader
}

func newForkRig(tb testing.TB) *forkRig {
	reqR, reqW := pipe(tb)
	respR, respW := pipe(tb)
	v := startVictim(tb, "echo", reqR, respW) // fd 3, fd 4
	reqR.Close()
	respW.Close()
	tb.Cleanup(func() { reqW.Close(); respR.Close() })
	tr := newTracer(tb)
	tc := seize(tb, tr, v.pid)
	regs, err := tc.Regs()
	if err != nil {
		tb.Fatal(err)
	}
	if !NormalizeRestart(&regs) {
		tb.Fatalf("template not stopped in a restartable syscall (rax %d)", int64(regs.Rax))
	}
	return &forkRig{v: v, tc: tc, regs: regs, childIn: reqW, childOutF: respR, childOut: bufio.NewReader(respR)}
}

func TestForkThroughBatch(t *testing.T) {
	rig := newForkRig(t)
	b, clone, mark := forkBatch(false)
	if err := rig.tc.InstallExecutor(); err != nil {
		t.Fatal(err)
	}
	parentBefore := rig.tc.RoundTrips()
	start := time.Now()
	cpid, childTrips := sfork(t, rig.tc, b, clone, mark, rig.regs)
	elapsed := time.Since(start)
	t.Cleanup(func() { unix.Kill(cpid, unix.SIGKILL) })
	t.Logf("sfork: %d round trips (template %d, child %d), %v", rig.tc.RoundTrips()-parentBefore+childTrips,
		rig.tc.RoundTrips()-parentBefore, childTrips, elapsed)

	if cpid == rig.v.pid {
		t.Fatal("child has the template's pid")
	}
	rig.childOutF.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := rig.childOut.ReadString('\n'); err != nil || line != "forked\n" {
		t.Fatalf("marker: %q, %v", line, err)
	}
	// The child resumed the template's own loop (re-issued read(0)) on its
	// own pipes.
	if got, want := ask(t, rig.childIn, rig.childOutF, rig.childOut), "pong "+strconv.Itoa(cpid); got != want {
		t.Fatalf("child answered %q, want %q", got, want)
	}
	if got, want := ask(t, rig.childIn, rig.childOutF, rig.childOut), "pong "+strconv.Itoa(cpid); got != want {
		t.Fatalf("child answered %q the second time, want %q", got, want)
	}
	// The template, still held, forks again; then it is let go and answers
	// on its own pipes.
	b2, clone2, mark2 := forkBatch(true)
	cpid2, _ := sfork(t, rig.tc, b2, clone2, mark2, rig.regs)
	t.Cleanup(func() { unix.Kill(cpid2, unix.SIGKILL) })
	rig.childOutF.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := rig.childOut.ReadString('\n'); err != nil || line != "forked\n" {
		t.Fatalf("second marker: %q, %v", line, err)
	}
	if err := rig.tc.Detach(); err != nil {
		t.Fatal(err)
	}
	if got, want := rig.v.ask(t), "pong "+strconv.Itoa(rig.v.pid); got != want {
		t.Fatalf("template answered %q, want %q", got, want)
	}
	// Both children share the child pipes now; whichever reads answers
	// with its own pid, never the template's.
	got := ask(t, rig.childIn, rig.childOutF, rig.childOut)
	if got != "pong "+strconv.Itoa(cpid) && got != "pong "+strconv.Itoa(cpid2) {
		t.Fatalf("a child answered %q", got)
	}
}

// BenchmarkForkViaBatch: sfork of a frozen C template (fork batch with
// zombie reaping, child adopts its pipes and writes a marker, registers
// loaded, detached) until the marker arrives. perCall makes each Tracee
// call on its own (one tracer-thread hand-off each); oneDo runs the whole
// sfork inside one Tracer.Do, as the fork engine should. Compare with
// BenchmarkRawFork on the same machine, in the same run.
func BenchmarkForkViaBatch(b *testing.B) {
	for _, oneDo := range []bool{false, true} {
		name := "perCall"
		if oneDo {
			name = "oneDo"
		}
		b.Run(name, func(b *testing.B) {
			requireTracing(b)
			rig := newForkRig(b)
			batch, clone, mark := forkBatch(true)
			if err := rig.tc.InstallExecutor(); err != nil {
				b.Fatal(err)
			}
			marker := make([]byte, 7)
			var childTrips uint64
			parentBefore, callsBefore := rig.tc.RoundTrips(), rig.tc.PtraceCalls()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var cpid int
				var ct uint64
				var err error
				if oneDo {
					err = rig.tc.Tracer().Do(func() (err error) {
						cpid, ct, err = sforkErr(rig.tc, batch, clone, mark, rig.regs)
						return err
					})
				} else {
					cpid, ct, err = sforkErr(rig.tc, batch, clone, mark, rig.regs)
				}
				if err != nil {
					b.Fatal(err)
				}
				childTrips += ct
				if _, err := io.ReadFull(rig.childOut, marker); err != nil {
					b.Fatal(err)
				}
				unix.Kill(cpid, unix.SIGKILL)
			}
			b.StopTimer()
			b.ReportMetric(float64(rig.tc.RoundTrips()-parentBefore)/float64(b.N), "template-stops/op")
			b.ReportMetric(float64(childTrips)/float64(b.N), "child-stops/op")
			b.ReportMetric(float64(rig.tc.PtraceCalls()-callsBefore)/float64(b.N), "template-ptrace/op")
		})
	}
}

// BenchmarkRawFork: the floor: the same C program forks itself; the child
// writes one byte and exits; the parent reads it and reaps the child.
func BenchmarkRawFork(b *testing.B) {
	requireTracing(b)
	v := startVictim(b, "forkbench")
	b.ResetTimer()
	fmt.Fprintf(v.in, "%d\n", b.N)
	v.rf.SetReadDeadline(time.Now().Add(5 * time.Minute))
	if line, err := v.out.ReadString('\n'); err != nil || line != "done\n" {
		b.Fatalf("forkbench: %q, %v", line, err)
	}
}
