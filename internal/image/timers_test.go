package image

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// timersVictim has POSIX timers (one signalling the process, one its
// second thread by SIGEV_THREAD_ID, one SIGEV_NONE), a setitimer, and
// signals queued and blocked: for the process (SIGUSR1), for the main
// thread (two SIGRTMIN+1, in order) and for the second thread
// (SIGRTMIN+2). On 'p' it prints its timers (id, clock-independent time
// left in seconds, interval) and pending sets; on 'q' it takes the
// queued signals (the thread takes its own) and prints each with its
// value, in the order they come.
const timersVictim = `
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/time.h>
static volatile int go;
static int thread_got[4];
static pid_t thread_tid;
static timer_t t1, t2, t3;
static void *worker(void *a) {
	sigset_t s; sigemptyset(&s); sigaddset(&s, SIGRTMIN + 2); sigaddset(&s, SIGRTMIN + 4);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	thread_tid = syscall(SYS_gettid);
	while (!go) usleep(1000);
	siginfo_t si; struct timespec z = {0, 0}; sigemptyset(&s); sigaddset(&s, SIGRTMIN + 2);
	int n = 0;
	while (sigtimedwait(&s, &si, &z) > 0 && n < 4) thread_got[n++] = si.si_value.sival_int;
	return NULL;
}
static long left(timer_t t, long *iv) { struct itimerspec v; timer_gettime(t, &v); *iv = v.it_interval.tv_sec; return v.it_value.tv_sec; }
int main(void) {
	close_range(3, ~0U, 0);
	sigset_t s; sigfillset(&s); sigdelset(&s, SIGTERM); sigdelset(&s, SIGKILL);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	pthread_t th; pthread_create(&th, NULL, worker, NULL);
	while (!thread_tid) usleep(1000);
	struct sigevent e = {0};
	e.sigev_notify = SIGEV_SIGNAL; e.sigev_signo = SIGRTMIN + 3; e.sigev_value.sival_ptr = (void *)0x77;
	if (timer_create(CLOCK_MONOTONIC, &e, &t1)) return 1;
	e.sigev_notify = SIGEV_THREAD_ID; e.sigev_signo = SIGRTMIN + 4; e._sigev_un._tid = thread_tid;
	if (timer_create(CLOCK_REALTIME, &e, &t2)) return 2;
	e.sigev_notify = SIGEV_NONE;
	if (timer_create(CLOCK_BOOTTIME, &e, &t3)) return 3;
	struct itimerspec a = {{5, 0}, {1000, 0}}, b = {{0, 0}, {2000, 0}}, c = {{0, 0}, {3000, 0}};
	timer_settime(t1, 0, &a, NULL); timer_settime(t2, 0, &b, NULL); timer_settime(t3, 0, &c, NULL);
	struct itimerval it = {{0, 0}, {4000, 0}}; setitimer(ITIMER_REAL, &it, NULL);
	union sigval v;
	v.sival_int = 11; sigqueue(getpid(), SIGUSR1, v);
	v.sival_int = 21; pthread_sigqueue(pthread_self(), SIGRTMIN + 1, v);
	v.sival_int = 22; pthread_sigqueue(pthread_self(), SIGRTMIN + 1, v);
	v.sival_int = 31; pthread_sigqueue(th, SIGRTMIN + 2, v);
	v.sival_int = 32; pthread_sigqueue(th, SIGRTMIN + 2, v);
	setvbuf(stdout, NULL, _IONBF, 0);
	char ch;
	while (read(0, &ch, 1) == 1) {
		if (ch == 'p') {
			long i1, i2, i3; long l1 = left(t1, &i1), l2 = left(t2, &i2), l3 = left(t3, &i3);
			sigset_t p; sigpending(&p);
			printf("ids %ld %ld %ld left %d %d %d iv %ld %ld %ld usr1 %d rt1 %d\n", (long)t1, (long)t2, (long)t3,
				l1 > 900 && l1 <= 1000, l2 > 1900 && l2 <= 2000, l3 > 2900 && l3 <= 3000, i1, i2, i3,
				sigismember(&p, SIGUSR1), sigismember(&p, SIGRTMIN + 1));
		} else {
			go = 1; pthread_join(th, NULL);
			siginfo_t si; struct timespec z = {0, 0}; sigset_t w; sigemptyset(&w);
			sigaddset(&w, SIGUSR1); sigaddset(&w, SIGRTMIN + 1);
			printf("got");
			while (sigtimedwait(&w, &si, &z) > 0) printf(" %d:%d", si.si_signo == SIGUSR1 ? 0 : si.si_signo - SIGRTMIN, si.si_value.sival_int);
			printf(" thread %d %d %d\n", thread_got[0], thread_got[1], thread_got[2]);
		}
	}
	return 0;
}
`

// TestTimersSignals checkpoints a process with POSIX timers and queued
// signals (its own, its main thread's, its other thread's) and checks the
// restored one has the same timers (ids, time left, interval) and gets
// the same signals with the same values in the same order.
func TestTimersSignals(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	v := startVictim(t, gccBuild(t, "timers", timersVictim))
	before := v.ask(t, 'p')
	if !strings.Contains(before, "left 1 1 1 iv 5 0 0 usr1 1 rt1 1") {
		t.Fatalf("victim before: %q", before)
	}
	p, img := roundTrip(t, tr, v)
	if len(img.Timers) != 3 || len(img.Signals) != 5 {
		t.Fatalf("image has %d timers and %d signals, want 3 and 5", len(img.Timers), len(img.Signals))
	}
	if got := p.ask(t, 'p'); got != before {
		t.Errorf("restored: %q, want %q", got, before)
	}
	// A thread's own queue is taken before the process's, as the
	// original's would be.
	if got, want := p.ask(t, 'q'), "got 1:21 1:22 0:11 thread 31 32 0"; got != want {
		t.Errorf("restored signals: %q, want %q", got, want)
	}
}

// withTimersSignals gives a synthetic image (with one thread, tid 7,
// blocking signal 10) a timer of each kind and two queued signals.
func withTimersSignals(c *compiled) {
	withThread(c)
	c.hdr.SigMask = 1<<(10-1) | 1<<(34-1)
	c.timers = []Timer{
		{ID: 0, Clock: 1, Notify: procfs.SigevSignal, Signo: 34, Value: 0x77, Spec: [4]int64{5, 0, 1000, 0}},
		{ID: 3, Clock: 0, Notify: procfs.SigevThreadID, Signo: 10, TID: 7, Spec: [4]int64{0, 0, 2, 999999999}},
		{ID: 4, Clock: 7, Notify: procfs.SigevNone},
	}
	var usr1 ptrace.SigInfo
	binary.LittleEndian.PutUint32(usr1[0:], 10)
	var rt ptrace.SigInfo
	binary.LittleEndian.PutUint32(rt[0:], 34)
	c.signals = []Signal{{Shared: 1, Info: usr1}, {TID: 7, Info: usr1}, {Info: rt}}
}

// TestHostileTimersSignals: each spoiled timer or signal record is
// refused by Open, naming it.
func TestHostileTimersSignals(t *testing.T) {
	img, err := Open(writeSynth(t, withTimersSignals))
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Timers) != 3 || len(img.Signals) != 3 || img.Timers[1].TID != 7 {
		t.Fatalf("read back %+v %+v", img.Timers, img.Signals)
	}
	for name, c := range map[string]struct {
		mod  func(c *compiled)
		want string
	}{
		"CPU-time clock":           {func(c *compiled) { c.timers[0].Clock = 2 }, "clock 2"},
		"alarm clock":              {func(c *compiled) { c.timers[0].Clock = 8 }, "clock 8"},
		"id twice":                 {func(c *compiled) { c.timers[1].ID = 0 }, "twice"},
		"SIGEV_THREAD":             {func(c *compiled) { c.timers[0].Notify = 2 }, "notify 2"},
		"thread not in the image":  {func(c *compiled) { c.timers[1].TID = 8 }, "thread 8"},
		"thread without THREAD_ID": {func(c *compiled) { c.timers[0].TID = 7 }, "signals none"},
		"nanoseconds":              {func(c *compiled) { c.timers[1].Spec[3] = 1e9 }, "itimerspec"},
		"negative time":            {func(c *compiled) { c.timers[1].Spec[2] = -1 }, "itimerspec"},
		"no signal":                {func(c *compiled) { c.timers[0].Signo = 0 }, "signal 0"},
		"SIGKILL queued": {func(c *compiled) {
			binary.LittleEndian.PutUint32(c.signals[2].Info[0:], 9)
		}, "not a signal"},
		"SIGTRAP queued": {func(c *compiled) {
			binary.LittleEndian.PutUint32(c.signals[2].Info[0:], 5)
			c.hdr.SigMask |= 1 << 4
		}, "not a signal"},
		"unblocked in its thread":    {func(c *compiled) { c.hdr.SigMask &^= 1 << (34 - 1) }, "does not block"},
		"unknown thread":             {func(c *compiled) { c.signals[1].TID = 9 }, "thread 9"},
		"shared, not blocked by all": {func(c *compiled) { c.threads[0].SigMask = 0 }, "every thread"},
		"shared with a thread":       {func(c *compiled) { c.signals[0].TID = 7 }, "every thread"},
		"shared flag":                {func(c *compiled) { c.signals[0].Shared = 2 }, "shared flag"},
		"main tid":                   {func(c *compiled) { c.hdr.MainTID = 0 }, "main thread tid"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Open(writeSynth(t, func(x *compiled) { withTimersSignals(x); c.mod(x) }))
			wantInvalid(t, err, c.want)
		})
	}
	// A prctl the plan may not hold: the restore-ids switch turned
	// another way than on.
	_, err = Open(writeSynth(t, func(c *compiled) {
		c.b.Add(unix.SYS_PRCTL, ptrace.Lit(prTimerCreateRestoreIDs), ptrace.Lit(2))
	}))
	wantInvalid(t, err, "PR_TIMER_CREATE_RESTORE_IDS_ON")
}

// FuzzDecodeMeta: meta.bin of any bytes is decoded or refused with
// errdefs.ErrInvalid, never a panic; what is accepted passes the timer and
// signal checks again.
func FuzzDecodeMeta(f *testing.F) {
	meta, plan, size := synth(withTimersSignals)
	f.Add(meta)
	m0, _, _ := synth(nil)
	f.Add(m0)
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := decode(b, plan, size)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := checkTimersSignals(img); err != nil {
			t.Fatalf("accepted tables fail the check: %v", err)
		}
	})
}
