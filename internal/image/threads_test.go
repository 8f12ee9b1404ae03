package image

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
	"github.com/catalyzer/catalyzer/internal/timing"
)

// threadsC has four threads besides main, each named and with a
// __thread value of its own (1000+i; main's is 1000): a spinner counting
// in a loop, a sleeper counting nanosleeps of 1 ms (EINTR counts too), a
// waiter in pthread_cond_wait (a futex wait) that counts its wake-ups,
// and a masked thread that blocks SIGUSR1, has a sigaltstack and counts
// SIGUSR2s it takes on that stack. Each thread but the waiter checks, at
// every turn, that gettid() is still the tid it started with. Commands on
// stdin: 'p' prints the state, 'w' signals the condvar, 'u' sends SIGUSR2
// to the masked thread with pthread_kill (which uses the tid glibc cached
// in its descriptor), 'q' exits.
const threadsC = `
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static __thread int tls = 1000;
static volatile long spins, sleeps;
static volatile int woke, usr2, onalt, badtid, view[5];
static pid_t tids[5];
static pthread_t th[5];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int gen;
static pthread_barrier_t ready;
static char altstack[1 << 16];

static void setup(int i, const char *name) {
	tls = 1000 + i;
	tids[i] = syscall(SYS_gettid);
	pthread_setname_np(pthread_self(), name);
}
static void check(int i) {
	view[i] = tls;
	if (syscall(SYS_gettid) != tids[i]) badtid = 1;
}
static void *spinner(void *a) {
	setup(1, "spinner");
	pthread_barrier_wait(&ready);
	for (;;) { spins++; check(1); }
}
static void *sleeper(void *a) {
	setup(2, "sleeper");
	pthread_barrier_wait(&ready);
	for (;;) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
		sleeps++;
		check(2);
	}
}
static void *waiter(void *a) {
	setup(3, "waiter");
	pthread_mutex_lock(&mu);
	int seen = gen;
	pthread_barrier_wait(&ready);
	for (;;) {
		while (gen == seen) pthread_cond_wait(&cv, &mu);
		seen = gen;
		woke++;
		check(3);
	}
}
static void on_usr2(int s) {
	char here;
	if (&here >= altstack && &here < altstack + sizeof altstack) onalt++;
	if (syscall(SYS_gettid) == tids[4]) usr2++;
}
static void *masked(void *a) {
	setup(4, "masked");
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
	sigaltstack(&ss, NULL);
	pthread_barrier_wait(&ready);
	for (;;) {
		struct timespec ts = {0, 5000000};
		nanosleep(&ts, NULL);
		check(4);
	}
}

int main(void) {
	close_range(3, ~0U, 0);
	struct sigaction sa = {0};
	sa.sa_handler = on_usr2;
	sa.sa_flags = SA_ONSTACK | SA_RESTART;
	sigaction(SIGUSR2, &sa, NULL);
	pthread_barrier_init(&ready, NULL, 5);
	void *(*fn[5])(void *) = {0, spinner, sleeper, waiter, masked};
	for (int i = 1; i < 5; i++) {
		pthread_create(&th[i], NULL, fn[i], NULL);
	}
	pthread_barrier_wait(&ready);
	printf("ready %d %d %d %d\n", tids[1], tids[2], tids[3], tids[4]);
	fflush(stdout);
	char c;
	while (read(0, &c, 1) == 1) {
		switch (c) {
		case 'q':
			exit(0);
		case 'w':
			pthread_mutex_lock(&mu);
			gen++;
			pthread_cond_signal(&cv);
			pthread_mutex_unlock(&mu);
			break;
		case 'u':
			pthread_kill(th[4], SIGUSR2);
			break;
		}
		usleep(20000);
		printf("spins=%ld sleeps=%ld woke=%d usr2=%d onalt=%d badtid=%d tls=%d,%d,%d,%d,%d\n", spins, sleeps, woke, usr2,
			onalt, badtid, tls, view[1], view[2], view[3], view[4]);
		fflush(stdout);
	}
	return 3;
}
`

// threadNames maps each thread of pid (the main thread included) to its
// name, its blocked signals and its effective capabilities.
func threadNames(t testing.TB, pid int) map[int]string {
	t.Helper()
	tids, err := procfs.Threads(pid)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, tid := range tids {
		ti, err := procfs.Thread(pid, tid)
		if err != nil {
			t.Fatal(err)
		}
		st, err := procfs.Status(tid)
		if err != nil {
			t.Fatal(err)
		}
		out[tid] = fmt.Sprintf("%s blocked=%s eff=%x", ti.Comm, st["SigBlk"], ti.CapEff)
	}
	return out
}

// startThreads starts threadsC and returns it with its four tids.
func startThreads(t testing.TB) (*proc, []int) {
	t.Helper()
	testutil.RequiresRoot(t)
	v := startVictim(t, gccBuild(t, "threads", threadsC))
	line, err := v.out.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	tids := make([]int, 4)
	if _, err := fmt.Sscanf(line, "ready %d %d %d %d", &tids[0], &tids[1], &tids[2], &tids[3]); err != nil {
		t.Fatalf("victim said %q: %v", line, err)
	}
	return v, tids
}

// TestCheckpointRestoreThreads: a process of five threads (one spinning,
// one in nanosleep, one in a futex wait, one with a blocked signal and a
// sigaltstack) is checkpointed and restored under its own pid: every
// thread is back with its tid, name, signal mask and TLS, the counters go
// on, the waiter wakes when signalled, pthread_kill reaches the masked
// thread on its alternate stack.
func TestCheckpointRestoreThreads(t *testing.T) {
	tr := ptrace.NewTracer()
	defer tr.Close()
	v, tids := startThreads(t)
	before := v.ask(t, 'w')
	names := threadNames(t, v.pid)
	dir := filepath.Join(t.TempDir(), "img")
	img, err := Checkpoint(tr, v.pid, dir, Options{Reconnect: []int{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Wait()
	if len(img.Threads) != 4 {
		t.Fatalf("image has %d threads, want 4", len(img.Threads))
	}
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	p, tc, err := StartRestorerAsPid(tr, []*os.File{inR, outW}, v.pid, img.ExecAddr())
	inR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Kill(); p.Wait() }()
	pid, st, err := Restore(tr, img, RestoreOptions{Tracee: tc, Reconnect: map[int]int{0: 3, 1: 4}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restore: %v", st.Phases)
	r := &proc{pid: pid, in: inW, out: bufio.NewReader(outR)}
	a1 := r.ask(t, 'p')
	a2 := r.ask(t, 'w')
	a3 := r.ask(t, 'u')
	t.Logf("before %s\nafter  %s\n       %s\n       %s", before, a1, a2, a3)
	if got := threadNames(t, pid); !maps.Equal(got, names) {
		t.Errorf("threads after restore:\n%v\nwant\n%v", got, names)
	}
	for _, tid := range tids {
		if _, err := procfs.Thread(pid, tid); err != nil {
			t.Errorf("thread %d: %v", tid, err)
		}
	}
	if field(t, a1, "tls") != "1000,1001,1002,1003,1004" || field(t, a3, "tls") != "1000,1001,1002,1003,1004" {
		t.Errorf("TLS values: %s, want 1000,1001,1002,1003,1004", field(t, a3, "tls"))
	}
	if atoi(field(t, a2, "spins")) <= atoi(field(t, a1, "spins")) || atoi(field(t, a1, "spins")) <= atoi(field(t, before, "spins")) {
		t.Errorf("spinner does not go on: %s / %s / %s", field(t, before, "spins"), field(t, a1, "spins"), field(t, a2, "spins"))
	}
	if atoi(field(t, a2, "sleeps")) <= atoi(field(t, a1, "sleeps")) {
		t.Errorf("sleeper does not go on: %s / %s", field(t, a1, "sleeps"), field(t, a2, "sleeps"))
	}
	if field(t, before, "woke") != "1" || field(t, a1, "woke") != "1" || field(t, a2, "woke") != "2" {
		t.Errorf("waiter woke %s / %s / %s times, want 1 1 2", field(t, before, "woke"), field(t, a1, "woke"), field(t, a2, "woke"))
	}
	if field(t, a3, "usr2") != "1" || field(t, a3, "onalt") != "1" || field(t, a3, "badtid") != "0" {
		t.Errorf("pthread_kill to the masked thread: %s, want usr2=1 onalt=1 badtid=0", a3)
	}
	r.in.Write([]byte{'q'})
	if ps, err := p.Wait(); err != nil || ps.ExitCode() != 0 {
		t.Errorf("restored process exit: %v %v", ps, err)
	}
}

// TestRestoreThreadTIDTaken: a restorer whose PID namespace already has a
// thread's tid in use (here: the original, left running as it was, its
// mappings too) fails with an error naming the tid and the way out, and
// leaves nothing behind.
func TestRestoreThreadTIDTaken(t *testing.T) {
	tr := ptrace.NewTracer()
	defer tr.Close()
	v, tids := startThreads(t)
	v.ask(t, 'p')
	maps, _ := layout(t, v.pid)
	img, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}, Leave: LeaveRunning})
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := layout(t, v.pid); !slices.Equal(after, maps) {
		t.Errorf("the process left running has other mappings (the executor?):\n%s\nbefore:\n%s", strings.Join(after, "\n"), strings.Join(maps, "\n"))
	}
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	defer inW.Close()
	defer outR.Close()
	cmd, tc, err := StartRestorer(tr, []*os.File{inR, outW})
	inR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Restore(tr, img, RestoreOptions{Tracee: tc, Reconnect: map[int]int{0: 3, 1: 4}})
	cmd.Wait()
	first := img.Threads[0].NSTID
	if !slices.Contains(tids, first) || !errors.Is(err, ErrPidTaken) || !errors.Is(err, errdefs.ErrConflict) ||
		!strings.Contains(err.Error(), fmt.Sprintf("thread %d: its tid is taken", first)) || !strings.Contains(err.Error(), "--sandbox") {
		t.Fatalf("restore with a tid taken: %v, want ErrPidTaken naming tid %d and --sandbox", err, first)
	}
	t.Log(err)
	if l := v.ask(t, 'p'); !strings.HasPrefix(l, "spins=") {
		t.Errorf("the original after the checkpoint: %q", l)
	}
	time.Sleep(10 * time.Millisecond)
	if ps, _ := procfs.PIDs(); slices.Contains(ps, cmd.Process.Pid) {
		t.Errorf("restorer %d left behind", cmd.Process.Pid)
	}
}

// idleThreadsC starts argv[1] threads that sleep in pause() and answers
// each byte on stdin.
const idleThreadsC = `
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static void *idle(void *a) { for (;;) pause(); }
int main(int argc, char **argv) {
	close_range(3, ~0U, 0);
	for (int i = 0; i < atoi(argv[1]); i++) { pthread_t t; pthread_create(&t, NULL, idle, NULL); }
	setvbuf(stdout, NULL, _IONBF, 0);
	char c;
	while (read(0, &c, 1) == 1) printf("ok\n");
	return 0;
}
`

// BenchmarkRestoreThreads measures what a re-created thread costs a
// restore: restore time (p50) of a process with 0 and with 8 idle
// threads. Each thread is one clone3 in the plan (and its clone event
// stop), then its adoption, its own batch and three register writes.
func BenchmarkRestoreThreads(b *testing.B) {
	testutil.RequiresRoot(b)
	bin := gccBuild(b, "idle", idleThreadsC)
	tr := ptrace.NewTracer()
	defer tr.Close()
	medians := map[int]time.Duration{}
	for _, n := range []int{0, 8} {
		b.Run(fmt.Sprintf("threads=%d", n), func(b *testing.B) {
			v := startVictim(b, bin, fmt.Sprint(n))
			v.ask(b, 'p')
			img, err := Checkpoint(tr, v.pid, b.TempDir(), Options{Reconnect: []int{0, 1}})
			if err != nil {
				b.Fatal(err)
			}
			v.cmd.Wait() // its tids are free for the restores
			var ds []time.Duration
			var last []timing.Phase
			for i := 0; i < b.N; i++ {
				p, st := restore(b, tr, img, false)
				p.ask(b, 'p')
				ds, last = append(ds, st.Total), st.Phases
				p.cmd.Process.Kill()
				p.cmd.Wait()
			}
			slices.Sort(ds)
			b.Logf("phases of the last restore: %v", last)
			medians[n] = ds[len(ds)/2]
			b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "restore-µs-p50")
		})
	}
	if m0, m8 := medians[0], medians[8]; m0 > 0 && m8 > 0 {
		b.Logf("cost per re-created thread: %.1f µs", float64(m8-m0)/8/1e3)
	}
}

// TestCheckpointRestoreObjects: a process holding eventfds, a timerfd, a
// signalfd, nested epolls and a pipe with bytes in it (kobj's victim) is
// restored with each object in its state, on its numbers.
func TestCheckpointRestoreObjects(t *testing.T) {
	tr := ptrace.NewTracer()
	defer tr.Close()
	src, err := os.ReadFile("../kobj/testdata/objects.c")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "objects")
	cc := exec.Command("gcc", "-O1", "-DNO_SHM", "-o", bin, "-x", "c", "-")
	cc.Stdin = strings.NewReader(string(src))
	if out, err := cc.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	v := startVictim(t, bin)
	if line, _ := v.out.ReadString('\n'); !strings.HasPrefix(line, "ready") {
		t.Fatalf("victim said %q", line)
	}
	img, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Wait()
	if got := img.Objects.Summary(); got != "2 eventfd, 1 timerfd, 1 signalfd, 2 epoll (3 watches), 1 pipe (5 bytes)" {
		t.Errorf("image objects: %s", got)
	}
	r, st := restore(t, tr, img, false)
	t.Logf("restore phases: %v", st.Phases)
	for _, c := range []struct {
		cmd  byte
		want string
	}{
		{'n', "n 1 1515"},
		{'w', "w 2 1010 1212"},
		{'e', "e 8 5"},
		{'s', "s 8 1"},
		{'p', "p 5 hello"},
		{'g', "g 128 10"},
	} {
		if got := r.ask(t, c.cmd); got != c.want && !(c.cmd == 'w' && got == "w 2 1212 1010") {
			t.Errorf("%c: restored process said %q, want %q", c.cmd, got, c.want)
		}
	}
	if got := r.ask(t, 't'); !strings.HasSuffix(got, " 7") || got == "t 0 7" {
		t.Errorf("timer: %q, want it armed with a 7 s interval", got)
	}
	if got := r.ask(t, 'i'); !strings.HasSuffix(got, "flags20=0") {
		t.Errorf("fd 20 (the eventfd's dup, inheritable): %q", got)
	}
}
