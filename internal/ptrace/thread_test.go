package ptrace

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSeizeGroup: every thread of a multi-threaded process is seized and
// stopped, the leader first; each thread's own state (signal mask,
// alternate stack, TLS, clear_child_tid, name, capabilities) is read as
// that thread has it;
// after Detach the process goes on.
func TestSeizeGroup(t *testing.T) {
	requireTracing(t)
	bin := filepath.Join(t.TempDir(), "threads")
	if out, err := exec.Command("gcc", "-O2", "-Wall", "-pthread", "-o", bin, "testdata/threads.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	in, _ := cmd.StdinPipe()
	outR, outW, _ := os.Pipe()
	cmd.Stdout = outW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	out := bufio.NewReader(outR)
	line, _ := out.ReadString('\n')
	var alt uintptr
	var tid1, tid2 int
	if _, err := fmt.Sscanf(line, "ready %v %d %d", &alt, &tid1, &tid2); err != nil {
		t.Fatalf("victim said %q: %v", line, err)
	}
	pid := cmd.Process.Pid

	tr := newTracer(t)
	if _, err := tr.Seize(pid); err == nil {
		t.Fatal("Seize of a multi-threaded process succeeded")
	}
	g, err := tr.SeizeGroup(pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Threads) != 3 || g.Leader().Pid() != pid {
		t.Fatalf("threads %d, leader %d", len(g.Threads), g.Leader().Pid())
	}
	sts, err := g.States()
	if err != nil {
		t.Fatal(err)
	}
	by := map[int]ThreadState{}
	fsBase := map[uint64]bool{}
	for _, st := range sts {
		by[st.TID] = st
		fsBase[st.Regs.Fs_base] = true
		if len(st.XState) == 0 {
			t.Errorf("thread %d: no xstate", st.TID)
		}
	}
	usr1, usr2 := uint64(1)<<(unix.SIGUSR1-1), uint64(1)<<(unix.SIGUSR2-1)
	if m := by[tid1].SigMask; m&usr1 == 0 || m&usr2 != 0 {
		t.Errorf("thread 1 mask %#x, want SIGUSR1 only", m)
	}
	if m := by[tid2].SigMask; m&usr2 == 0 || m&usr1 != 0 {
		t.Errorf("thread 2 mask %#x, want SIGUSR2 only", m)
	}
	if m := by[pid].SigMask; m&(usr1|usr2) != 0 {
		t.Errorf("main thread mask %#x", m)
	}
	st1, st2 := by[tid1], by[tid2]
	if sp := binary.LittleEndian.Uint64(st1.AltStack[:]); uintptr(sp) != alt {
		t.Errorf("thread 1 altstack %#x, want %#x", sp, alt)
	}
	if sp := binary.LittleEndian.Uint64(st2.AltStack[:]); sp != 0 {
		t.Errorf("thread 2 altstack %#x, want none", sp)
	}
	if by[tid1].TIDAddress == 0 || by[tid1].TIDAddress == by[tid2].TIDAddress {
		t.Errorf("clear_child_tid %#x / %#x: want each thread its own", by[tid1].TIDAddress, by[tid2].TIDAddress)
	}
	if st1.Comm != "worker0" || st2.Comm != "worker1" {
		t.Errorf("thread names %q %q, want worker0 worker1", st1.Comm, st2.Comm)
	}
	if sysTime := uint64(1) << unix.CAP_SYS_TIME; st1.Caps.Effective&sysTime == 0 || st2.Caps.Effective&sysTime != 0 ||
		st2.Caps.Permitted&sysTime == 0 {
		t.Errorf("effective caps %#x / %#x (permitted %#x): want CAP_SYS_TIME dropped from thread 2's effective set only",
			st1.Caps.Effective, st2.Caps.Effective, st2.Caps.Permitted)
	}
	if st1.NSTID != tid1 || st1.Seccomp != 0 {
		t.Errorf("thread 1: NSTID %d seccomp %d, want %d and 0", st1.NSTID, st1.Seccomp, tid1)
	}
	if len(fsBase) != 3 {
		t.Errorf("fs_base (TLS) not per thread: %v", fsBase)
	}
	if err := g.Detach(); err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("hi\n"))
	if got, _ := out.ReadString('\n'); strings.TrimSpace(got) != "echo hi" {
		t.Fatalf("after Detach the victim said %q", got)
	}
}
