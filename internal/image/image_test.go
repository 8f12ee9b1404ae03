package image

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// victimC uses what a restore must bring back: a file with an offset, a
// pipe with contents, SIGUSR1 and SIGALRM handlers, an interval timer,
// brk-based malloc, a __thread variable and the vDSO clock. Each 'p' on
// stdin prints its state on one line; 'r' reads one byte of the file.
const victimC = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, alrm;
static __thread int tls = 100;
static void on_usr1(int s) { usr1++; }
static void on_alrm(int s) { alrm++; }

int main(int argc, char **argv) {
	close_range(3, ~0U, 0); /* fds the test harness leaked to us */
	struct sigaction sa = {0};
	sa.sa_flags = SA_RESTART;
	sa.sa_handler = on_usr1; sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_alrm; sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = {{0, 20000}, {0, 20000}};
	setitimer(ITIMER_REAL, &it, NULL);
	int f = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
	write(f, "0123456789", 10);
	lseek(f, 3, SEEK_SET);
	int p[2]; pipe(p); write(p[1], "hello", 5);
	char *m = malloc(50000); strcpy(m, "malloced");
	void *brk0 = sbrk(0);
	int n = 0; char c;
	for (;;) {
		ssize_t r = read(0, &c, 1);
		if (r != 1) return 3;
		if (c == 'q') return 0;
		if (c == 'r') { char b = '?'; read(f, &b, 1); printf("byte %c\n", b); fflush(stdout); continue; }
		struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
		int inpipe = 0; ioctl(p[0], FIONREAD, &inpipe);
		char *x = malloc(1000); snprintf(x, 1000, "m%d", n);
		tls++;
		printf("n=%d usr1=%d off=%ld pipe=%d tls=%d heap=%s x=%s brkgrew=%d alrm=%d clock=%ld\n",
			n++, (int)usr1, (long)lseek(f, 0, SEEK_CUR), inpipe, tls, m, x,
			(char *)sbrk(0) >= (char *)brk0, alrm > 0, (long)ts.tv_sec * 1000000000L + ts.tv_nsec);
		fflush(stdout);
	}
}
`

func gccBuild(t testing.TB, name, src string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("needs gcc to build the C victim")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, name)
	if err := os.WriteFile(out+".c", []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("gcc", "-O1", "-o", out, out+".c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, b)
	}
	return out
}

// proc is a process we talk to over two pipes.
type proc struct {
	pid int
	in  *os.File
	out *bufio.Reader
	cmd *exec.Cmd
}

func (p *proc) ask(t testing.TB, c byte) string {
	t.Helper()
	if _, err := p.in.Write([]byte{c}); err != nil {
		t.Fatal(err)
	}
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() { s, err := p.out.ReadString('\n'); ch <- res{s, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("read answer of %d: %v", p.pid, r.err)
		}
		return strings.TrimSpace(r.s)
	case <-time.After(10 * time.Second):
		t.Fatalf("no answer from %d", p.pid)
	}
	return ""
}

func startVictim(t testing.TB, bin string, args ...string) *proc {
	t.Helper()
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout = inR, outW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); inW.Close(); outR.Close() })
	return &proc{pid: cmd.Process.Pid, in: inW, out: bufio.NewReader(outR), cmd: cmd}
}

// restore restores img into a fresh restorer whose fds 0 and 1 are new pipes.
func restore(t testing.TB, tr *ptrace.Tracer, img *Image, prefetch bool) (*proc, Stats) {
	t.Helper()
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	cmd, tc, err := StartRestorer(tr, []*os.File{inR, outW})
	inR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	pid, st, err := Restore(tr, img, RestoreOptions{Tracee: tc, Reconnect: map[int]int{0: 3, 1: 4}, Prefetch: prefetch})
	if err != nil {
		cmd.Wait()
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); inW.Close(); outR.Close() })
	return &proc{pid: pid, in: inW, out: bufio.NewReader(outR), cmd: cmd}, st
}

func field(t testing.TB, line, key string) string {
	t.Helper()
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok && k == key {
			return v
		}
	}
	t.Fatalf("no %s in %q", key, line)
	return ""
}

// layout is what must match before and after: each mapping's range and
// permissions (the path of anonymous memory changes: it is mapped from
// pages.img), and each fd's number, kind and offset.
func layout(t testing.TB, pid int) (maps []string, fds []string) {
	t.Helper()
	vs, err := procfs.Maps(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		name := v.Path
		if !strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/"+PagesFile) {
			if name != "[vdso]" && name != "[vvar]" && name != "[vvar_vclock]" && name != "[vsyscall]" {
				name = "anon"
			}
		}
		maps = append(maps, fmt.Sprintf("%x-%x %s %s", v.Start, v.End, v.Perms, name))
	}
	open, err := procfs.FDs(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range open {
		link := f.Link
		if strings.HasPrefix(link, "pipe:") {
			link = "pipe"
		}
		fds = append(fds, fmt.Sprintf("%d %s pos %d", f.Num, link, f.Info.Pos))
	}
	return maps, fds
}

func checkpointVictim(t testing.TB, tr *ptrace.Tracer) (*proc, *Image, string) {
	t.Helper()
	testutil.RequiresRoot(t)
	bin := gccBuild(t, "victim", victimC)
	data := filepath.Join(t.TempDir(), "data")
	v := startVictim(t, bin, data)
	v.ask(t, 'p')
	for i := 0; i < 2; i++ {
		unix.Kill(v.pid, unix.SIGUSR1)
		time.Sleep(30 * time.Millisecond)
	}
	line := v.ask(t, 'p')
	victimMaps, victimFDs = layout(t, v.pid)
	dir := filepath.Join(t.TempDir(), "img")
	img, err := Checkpoint(tr, v.pid, dir, Options{Reconnect: []int{0, 1}, Leave: LeaveKilled})
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Wait()
	return v, img, line
}

var victimMaps, victimFDs []string

func TestCheckpointRestore(t *testing.T) {
	tr := ptrace.NewTracer()
	defer tr.Close()
	_, img, before := checkpointVictim(t, tr)
	t.Logf("before: %s", before)
	r, st := restore(t, tr, img, false)
	t.Logf("restore: %+v", st)
	after := r.ask(t, 'p')
	maps, fds := layout(t, r.pid)
	if a, b := strings.Join(victimMaps, "\n"), strings.Join(maps, "\n"); a != b {
		t.Errorf("maps differ:\nbefore:\n%s\nafter:\n%s", a, b)
	}
	if a, b := strings.Join(victimFDs, "\n"), strings.Join(fds, "\n"); a != b {
		t.Errorf("fds differ:\nbefore:\n%s\nafter:\n%s", a, b)
	}
	t.Logf("after:  %s", after)
	for _, k := range []string{"usr1", "off", "pipe", "heap", "brkgrew"} {
		if a, b := field(t, before, k), field(t, after, k); a != b {
			t.Errorf("%s: %s before, %s after", k, a, b)
		}
	}
	if field(t, after, "n") != "2" || field(t, after, "tls") != "103" || field(t, after, "x") != "m2" {
		t.Errorf("counters did not continue: %s", after)
	}
	if field(t, after, "clock") <= field(t, before, "clock") {
		t.Errorf("clock went back")
	}
	unix.Kill(r.pid, unix.SIGUSR1)
	time.Sleep(50 * time.Millisecond)
	want := fmt.Sprint(atoi(field(t, before, "usr1")) + 1)
	if l := r.ask(t, 'p'); field(t, l, "usr1") != want || field(t, l, "alrm") != "1" {
		t.Errorf("handler after restore: %s", l)
	}
	if l := r.ask(t, 'r'); l != "byte 3" {
		t.Errorf("file offset: %s", l)
	}
	r.in.Write([]byte{'q'})
	if err := r.cmd.Wait(); err != nil {
		t.Errorf("restored process exit: %v", err)
	}
}

func atoi(s string) int { var n int; fmt.Sscan(s, &n); return n }

// TestRestoreAsPid: a restore gets the checkpointed process's pid back
// when it is free (clone3 set_tid from the restorer), and says so when it
// is not.
func TestRestoreAsPid(t *testing.T) {
	tr := ptrace.NewTracer()
	defer tr.Close()
	v, img, _ := checkpointVictim(t, tr)
	// Taken: by a process of ours that holds it.
	busy := startVictim(t, "/bin/sleep", "100")
	if _, _, err := StartRestorerAsPid(tr, nil, busy.pid, img.ExecAddr()); !errors.Is(err, ErrPidTaken) {
		t.Fatalf("pid in use: %v, want ErrPidTaken", err)
	}
	// Free (the victim was reaped): the restored process is v.pid again.
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	p, tc, err := StartRestorerAsPid(tr, []*os.File{inR, outW}, v.pid, img.ExecAddr())
	inR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Kill(); p.Wait() }()
	pid, _, err := Restore(tr, img, RestoreOptions{Tracee: tc, Reconnect: map[int]int{0: 3, 1: 4}})
	if err != nil {
		t.Fatal(err)
	}
	if pid != v.pid {
		t.Fatalf("restored as %d, want the original %d", pid, v.pid)
	}
	r := &proc{pid: pid, in: inW, out: bufio.NewReader(outR)}
	if line := r.ask(t, 'p'); line == "" {
		t.Fatal("restored process does not answer")
	}
}
