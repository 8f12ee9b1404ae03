package sfork

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// victim is a plain C program that knows nothing about us: it answers
// each byte on stdin with its pid and a counter on stdout.
const victimC = `
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <sys/mman.h>
static char heap_marker[64] = "template-data";
int main(void) {
	char c; int n = 0;
	char *p = malloc(1 << 20); p[0] = 'x';
	/* A secret that clones must not inherit (MADV_WIPEONFORK). */
	char *w = mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
	w[0] = 'S';
	if (madvise(w, 4096, 18 /* MADV_WIPEONFORK */) != 0) return 2;
	setvbuf(stdout, NULL, _IONBF, 0);
	while (read(0, &c, 1) == 1) {
		if (c == 'q') return 0;
		if (c == 'w') { printf("wipe %d\n", w[0]); continue; }
		printf("pong %d %d %s\n", (int)getpid(), n++, heap_marker);
	}
	return 0;
}
`

const victimGo = `package main
import ("bufio"; "fmt"; "os")
func main() { r := bufio.NewReader(os.Stdin); for { if _, err := r.ReadByte(); err != nil { return }; fmt.Println("pong", os.Getpid()) } }
`

func build(t *testing.T, name, src string) string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, name)
	var cmd *exec.Cmd
	if strings.HasSuffix(name, ".go") {
		os.WriteFile(out, []byte(src), 0o644)
		bin := strings.TrimSuffix(out, ".go")
		cmd = exec.Command("go", "build", "-o", bin, out)
		out = bin
	} else {
		if _, err := exec.LookPath("gcc"); err != nil {
			t.Skip("needs gcc to build the victim")
		}
		os.WriteFile(out+".c", []byte(src), 0o644)
		cmd = exec.Command("gcc", "-O1", "-o", out, out+".c")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	return out
}

type victim struct {
	cmd  *exec.Cmd
	in   *os.File // write end of its stdin
	out  *bufio.Reader
	conn *net.UnixConn
}

// startVictim runs bin with a fork channel on fd 3.
func startVictim(t testing.TB, bin string) *victim {
	t.Helper()
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "chan"), os.NewFile(uintptr(fds[1]), "chan-template")
	cmd := exec.Command(bin)
	// Without rseq: the kernel writes the running CPU into a registered
	// rseq area whenever the thread runs (here: our injected batches), which
	// would look like the template's memory changing.
	cmd.Env = append(os.Environ(), "GLIBC_TUNABLES=glibc.pthread.rseq=0")
	cmd.Stdin, cmd.Stdout, cmd.ExtraFiles = inR, outW, []*os.File{theirs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	theirs.Close()
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		t.Fatal(err)
	}
	v := &victim{cmd: cmd, in: inW, out: bufio.NewReader(outR), conn: c.(*net.UnixConn)}
	t.Cleanup(func() { cmd.Process.Kill() })
	return v
}

func ask(t *testing.T, in *os.File, out *bufio.Reader) string {
	t.Helper()
	if _, err := in.Write([]byte{'p'}); err != nil {
		t.Fatal(err)
	}
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// fingerprint describes what must not change in a template: its
// mappings, the contents of its writable mappings (but the executor's
// region: its stack and batch area change with every fork), its fds (but
// those the last fork passed along, closed by the next fork).
func fingerprint(t *testing.T, pid int, skip uintptr, held []int) map[string]string {
	t.Helper()
	out := map[string]string{}
	maps, err := procfs.Maps(pid)
	if err != nil {
		t.Fatal(err)
	}
	out["maps"] = fmt.Sprint(maps)
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	for _, m := range maps {
		if !m.Perms.Write || m.Path == "[stack]" {
			continue
		}
		lo, hi := uintptr(m.Start), uintptr(m.End)
		// The executor's region may have merged with a neighbour.
		for _, r := range [][2]uintptr{{lo, min(hi, skip)}, {max(lo, skip+ptrace.ExecutorRegionSize), hi}} {
			if r[0] < r[1] {
				buf := make([]byte, r[1]-r[0])
				mem.ReadAt(buf, int64(r[0]))
				out[fmt.Sprintf("mem %x-%x", r[0], r[1])] = fmt.Sprintf("%x", sha256.Sum256(buf))
			}
		}
	}
	isHeld := map[string]bool{}
	for _, fd := range held {
		isHeld[fmt.Sprint(fd)] = true
	}
	links, err := procfs.FDLinks(pid)
	if err != nil {
		t.Fatal(err)
	}
	for fd, l := range links {
		if isHeld[fmt.Sprint(fd)] {
			l = "held"
		}
		out[fmt.Sprint("fd ", fd)] = l
	}
	return out
}

type forkedIO struct {
	in  *os.File
	out *bufio.Reader
}

func forkOne(t testing.TB, tpl *Template) (Forked, forkedIO) {
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	defer inR.Close()
	defer outW.Close()
	f, err := tpl.Fork(Child{
		Files:  []*os.File{inR, outW},
		Dups:   []Dup{{File: 0, Target: 0}, {File: 1, Target: 1}},
		Join:   -1,
		NewPID: true,
		Close:  []int{3},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f, forkedIO{inW, bufio.NewReader(outR)}
}

func TestForkPlainC(t *testing.T) {
	testutil.RequiresRoot(t)
	v := startVictim(t, build(t, "victim", victimC))
	before := ask(t, v.in, v.out) // "pong PID 0 template-data"
	v.in.Write([]byte{'w'})
	if got, _ := v.out.ReadString('\n'); strings.TrimSpace(got) != "wipe 83" {
		t.Fatalf("template's MADV_WIPEONFORK page: %q, want 'S' (83)", got)
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	tpl, err := Freeze(tr, v.cmd.Process.Pid, v.conn, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer tpl.Close()

	f, io := forkOne(t, tpl)
	// The child is PID 1 of its own PID namespace, has the template's
	// memory (its counter goes on from 1) and its own I/O.
	if got := ask(t, io.in, io.out); got != "pong 1 1 template-data" {
		t.Fatalf("child answered %q (template said %q)", got, before)
	}
	if got := ask(t, io.in, io.out); got != "pong 1 2 template-data" {
		t.Fatalf("child's second answer %q", got)
	}
	if f.Pid == v.cmd.Process.Pid || f.RoundTrips == 0 || len(f.Phases) == 0 {
		t.Fatalf("forked: %+v", f)
	}
	// A MADV_WIPEONFORK page reads zero in the child.
	if _, err := io.in.Write([]byte{'w'}); err != nil {
		t.Fatal(err)
	}
	if got, _ := io.out.ReadString('\n'); strings.TrimSpace(got) != "wipe 0" {
		t.Fatalf("child's MADV_WIPEONFORK page: %q, want zero", got)
	}
	// A second child starts from the template's state, not the first child's.
	_, io2 := forkOne(t, tpl)
	if got := ask(t, io2.in, io2.out); got != "pong 1 1 template-data" {
		t.Fatalf("second child answered %q", got)
	}
	// The template never ran: its counter is where it was.
	io.in.Write([]byte{'q'})
	io2.in.Write([]byte{'q'})
	tpl.Close()
	t.Logf("fork phases: %v, round trips %d", f.Phases, f.RoundTrips)
}

// TestTemplateUnchanged: after many forks (children exiting), the
// template's mappings, writable memory and fds are as before.
func TestTemplateUnchanged(t *testing.T) {
	testutil.RequiresRoot(t)
	n := 1000
	if testing.Short() {
		n = 100
	}
	v := startVictim(t, build(t, "victim", victimC))
	ask(t, v.in, v.out)
	tr := ptrace.NewTracer()
	defer tr.Close()
	tpl, err := Freeze(tr, v.cmd.Process.Pid, v.conn, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer tpl.Close()
	_, first := forkOne(t, tpl) // the first fork leaves the held fds and the executor's data
	var exec uintptr
	tr.Do(func() error { exec, _ = tpl.tracee.ExecutorRegion(); return nil })
	tpl.mu.Lock() // the fork's files are closed in the template in the background
	before := fingerprint(t, tpl.Pid(), exec, tpl.held)
	tpl.mu.Unlock()
	for i := 0; i < n; i++ {
		f, io := forkOne(t, tpl)
		pfd, err := unix.PidfdOpen(f.Pid, 0)
		if err != nil {
			t.Fatal(err)
		}
		io.in.Write([]byte{'q'}) // the child exits; the next fork reaps it
		io.in.Close()
		// Dead before the next fork (its pidfd turns readable), so that
		// fork's reap must collect it.
		if _, err := unix.Poll([]unix.PollFd{{Fd: int32(pfd), Events: unix.POLLIN}}, 10_000); err != nil {
			t.Fatal(err)
		}
		unix.Close(pfd)
	}
	_, last := forkOne(t, tpl)
	tpl.mu.Lock()
	after := fingerprint(t, tpl.Pid(), exec, tpl.held)
	tpl.mu.Unlock()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("template changed after %d forks: %s (executor at %x)", n, k, exec)
		}
	}
	if len(after) != len(before) {
		t.Errorf("template changed after %d forks: %d entries, was %d", n, len(after), len(before))
	}
	if z := testutil.Zombies(tpl.Pid()); z != 0 {
		t.Fatalf("%d zombie children of the template after reaping", z)
	}
	// The first and last children run until here: their stdin (closed
	// by its finalizer once unreferenced) would end them at any time.
	runtime.KeepAlive(first)
	runtime.KeepAlive(last)
}

func TestRefuseMultiThreaded(t *testing.T) {
	testutil.RequiresRoot(t)
	bin := build(t, "victim.go", victimGo)
	v := startVictim(t, bin)
	ask(t, v.in, v.out)
	tr := ptrace.NewTracer()
	defer tr.Close()
	_, err := Freeze(tr, v.cmd.Process.Pid, v.conn, 3)
	if !errors.Is(err, ptrace.ErrMultiThreaded) {
		t.Fatalf("Freeze of a Go program: %v, want ErrMultiThreaded (the Go runtime always runs several threads)", err)
	}
	// It is left running, unharmed.
	time.Sleep(10 * time.Millisecond)
	if got := ask(t, v.in, v.out); !strings.HasPrefix(got, "pong") {
		t.Fatalf("victim after refusal: %q", got)
	}
}

// BenchmarkTemplateFork times Template.Fork of a plain C program, to the
// child's first answer; compare with ptrace's BenchmarkRawFork (the same
// kind of program forking itself) run in the same go test invocation.
func BenchmarkTemplateFork(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	t := &testing.T{}
	v := startVictim(t, build(t, "victim", victimC))
	ask(t, v.in, v.out)
	tr := ptrace.NewTracer()
	defer tr.Close()
	tpl, err := Freeze(tr, v.cmd.Process.Pid, v.conn, 3)
	if err != nil {
		b.Fatal(err)
	}
	defer tpl.Close()
	var trips uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, io := forkOne(b, tpl)
		ask(t, io.in, io.out)
		io.in.Write([]byte{'q'})
		io.in.Close()
		trips += f.RoundTrips
	}
	b.ReportMetric(float64(trips)/float64(b.N), "roundtrips/op")
}

// TestForkIntoCgroup: on cgroup v2 a child forked with Child.Cgroup is
// born in that cgroup (clone3 CLONE_INTO_CGROUP), so what its creation
// charges is not the template's. v1 and hybrid hosts have no such clone.
func TestForkIntoCgroup(t *testing.T) {
	testutil.RequiresRoot(t)
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		t.Skip("cgroup v2 only (this host's /sys/fs/cgroup is v1 or hybrid): CLONE_INTO_CGROUP needs a v2 hierarchy")
	}
	dir := fmt.Sprintf("/sys/fs/cgroup/catalyzer-test-sfork-%d", os.Getpid())
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dir)
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	v := startVictim(t, build(t, "victim", victimC))
	tr := ptrace.NewTracer()
	defer tr.Close()
	tpl, err := Freeze(tr, v.cmd.Process.Pid, v.conn, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer tpl.Close()
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	f, err := tpl.Fork(Child{Files: []*os.File{inR, outW}, Dups: []Dup{{File: 0, Target: 0}, {File: 1, Target: 1}},
		Join: -1, NewPID: true, Close: []int{3}, Cgroup: cg})
	inR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", f.Pid))
	if want := "0::/" + filepath.Base(dir) + "\n"; string(b) != want {
		t.Errorf("child's cgroup %q, want %q", b, want)
	}
	if got := ask(t, inW, bufio.NewReader(outR)); got != "pong 1 1 template-data" {
		t.Errorf("child answered %q", got)
	}
	inW.Write([]byte{'q'})
	unix.Kill(f.Pid, unix.SIGKILL)
}

// TestForkThreads: a multi-threaded template (FreezeOptions.Threads) forks
// into a child with every thread re-created: the same tids in the child's
// PID namespace, each thread's own signal mask, name and capabilities,
// and a child that works.
func TestForkThreads(t *testing.T) {
	testutil.RequiresRoot(t)
	src, err := os.ReadFile("../ptrace/testdata/threads.c")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "threads")
	cmd := exec.Command("gcc", "-O2", "-pthread", "-o", bin, "-x", "c", "-")
	cmd.Stdin = strings.NewReader(string(src))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	v := startVictim(t, bin)
	line, _ := v.out.ReadString('\n')
	var alt uintptr
	var tid1, tid2 int
	if _, err := fmt.Sscanf(line, "ready %v %d %d", &alt, &tid1, &tid2); err != nil {
		t.Fatalf("victim said %q: %v", line, err)
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	if _, err := Freeze(tr, v.cmd.Process.Pid, v.conn, 3); err == nil {
		t.Fatal("Freeze of a multi-threaded process without FreezeOptions.Threads succeeded")
	}
	tpl, err := FreezeWith(tr, v.cmd.Process.Pid, v.conn, 3, FreezeOptions{Threads: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tpl.Close()
	blocked := func(pid, tid int) string {
		st, err := procfs.Status(tid)
		if err != nil {
			t.Fatalf("status of %d: %v", tid, err)
		}
		return st["SigBlk"]
	}
	want := map[int]string{tid1: blocked(v.cmd.Process.Pid, tid1), tid2: blocked(v.cmd.Process.Pid, tid2)}
	info := func(pid, tid int) procfs.ThreadInfo {
		ti, err := procfs.Thread(pid, tid)
		if err != nil {
			t.Fatal(err)
		}
		return ti
	}
	tinfo := map[int]procfs.ThreadInfo{tid1: info(v.cmd.Process.Pid, tid1), tid2: info(v.cmd.Process.Pid, tid2)}
	for i := 0; i < 2; i++ {
		f, io := forkOne(t, tpl)
		tids, err := procfs.Threads(f.Pid)
		if err != nil || len(tids) != 3 {
			t.Fatalf("child %d threads %v %v, want 3", f.Pid, tids, err)
		}
		seen := map[int]bool{}
		for _, tid := range tids {
			if tid == f.Pid {
				continue
			}
			ti := info(f.Pid, tid)
			ns := ti.NSTID
			seen[ns] = true
			if w := tinfo[ns]; ti.Comm != w.Comm || ti.CapEff != w.CapEff || ti.CapPrm != w.CapPrm {
				t.Errorf("child thread %d: name %q caps eff %#x prm %#x, want the template thread's %q %#x %#x",
					ns, ti.Comm, ti.CapEff, ti.CapPrm, w.Comm, w.CapEff, w.CapPrm)
			}
			if w, ok := want[ns]; !ok || blocked(f.Pid, tid) != w {
				t.Errorf("child thread %d (tid %d in its namespace): SigBlk %s, want the template thread's %s", tid, ns, blocked(f.Pid, tid), w)
			}
		}
		if !seen[tid1] || !seen[tid2] {
			t.Errorf("child's thread tids %v, want %d and %d", seen, tid1, tid2)
		}
		io.in.Write([]byte("hi\n"))
		if got, _ := io.out.ReadString('\n'); strings.TrimSpace(got) != "echo hi" {
			t.Fatalf("forked child said %q", got)
		}
		io.in.Write([]byte("q\n"))
		t.Logf("fork phases: %v, round trips %d", f.Phases, f.RoundTrips)
	}
}

// TestForkObjects: with CopyObjects every fork gets its own eventfds,
// timerfd, signalfd, epolls, pipe and shared memory, in the template's
// state: what one child does to them neither its sibling nor a later
// fork sees (they would share the template's otherwise).
func TestForkObjects(t *testing.T) {
	testutil.RequiresRoot(t)
	src, err := os.ReadFile("../kobj/testdata/objects.c")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "objects")
	cc := exec.Command("gcc", "-O1", "-DFIRST_CLOSED=4", "-o", bin, "-x", "c", "-")
	cc.Stdin = strings.NewReader(string(src))
	if out, err := cc.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	start := func() *victim {
		v := startVictim(t, bin)
		if line, _ := v.out.ReadString('\n'); !strings.HasPrefix(line, "ready") {
			t.Fatalf("victim said %q", line)
		}
		return v
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	v := start()
	if _, err := FreezeWith(tr, v.cmd.Process.Pid, v.conn, 3, FreezeOptions{CopyObjects: true, Skip: []int{0, 1, 2}}); !errors.Is(err, errdefs.ErrNotSupported) ||
		!strings.Contains(err.Error(), "fd 3 (socket:") {
		t.Fatalf("freeze that does not skip the fork channel (a socket) = %v, want it refused by name", err)
	}
	v = start()
	tpl, err := FreezeWith(tr, v.cmd.Process.Pid, v.conn, 3, FreezeOptions{CopyObjects: true, Skip: []int{0, 1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	defer tpl.Close()
	t.Logf("objects: %s", tpl.Objects().Summary())
	say := func(io forkedIO, cmd string) string {
		t.Helper()
		io.in.Write([]byte(cmd))
		line, err := io.out.ReadString('\n')
		if err != nil {
			t.Fatalf("child after %q: %v", cmd, err)
		}
		return strings.TrimSpace(line)
	}
	fa, a := forkOne(t, tpl)
	defer unix.Kill(fa.Pid, unix.SIGKILL)
	for _, cmd := range []string{"E", "P", "M", "T", "K"} {
		say(a, cmd)
	}
	if got := say(a, "e"); got != "e 8 6" {
		t.Errorf("child a's eventfd after its write: %q", got)
	}
	// A sibling forked after a changed everything: the template's state.
	for i := range 2 {
		fb, b := forkOne(t, tpl)
		for _, c := range []struct{ cmd, want string }{
			{"n", "n 1 1515"},
			{"e", "e 8 5"},
			{"s", "s 8 1"},
			{"p", "p 5 hello"},
			{"m", "m shared-page-one shared-page-two"},
			{"g", "g 128 10"},
			{"k", "k 4 sock"},
			{"d", "d 3 one 4 two!"},
		} {
			if got := say(b, c.cmd); got != c.want {
				t.Errorf("fork %d: %s: child said %q, want %q (the template's state)", i, c.cmd, got, c.want)
			}
		}
		if got := say(b, "t"); !strings.HasSuffix(got, " 7") || got == "t 0 0" {
			t.Errorf("fork %d: timer %q, want it armed with a 7 s interval", i, got)
		}
		say(b, "E")
		unix.Kill(fb.Pid, unix.SIGKILL)
	}
	// And a's objects are its own: the siblings' writes did not reach it.
	if got := say(a, "m"); got != "m child-wrote shared-page-two" {
		t.Errorf("child a's shared memory: %q", got)
	}
	if got := say(a, "e"); got != "e -1 0" {
		t.Errorf("child a's eventfd after it was read: %q, want empty", got)
	}
}

// TestForkThreadsFailureReaped: a fork whose child batch fails after it
// re-created some threads (here: no PID namespace of its own, so a
// thread's tid is taken) kills and reaps the child and those threads; the
// template still forks and closes (the traced threads' deaths used to be
// left unreaped, and the child's Wait never returned).
func TestForkThreadsFailureReaped(t *testing.T) {
	testutil.RequiresRoot(t)
	src, err := os.ReadFile("../ptrace/testdata/threads.c")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "threads")
	cc := exec.Command("gcc", "-O2", "-pthread", "-o", bin, "-x", "c", "-")
	cc.Stdin = strings.NewReader(string(src))
	if out, err := cc.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	v := startVictim(t, bin)
	v.out.ReadString('\n')
	tr := ptrace.NewTracer()
	defer tr.Close()
	tpl, err := FreezeWith(tr, v.cmd.Process.Pid, v.conn, 3, FreezeOptions{Threads: true})
	if err != nil {
		t.Fatal(err)
	}
	inR, inW, _ := os.Pipe()
	defer inW.Close()
	_, err = tpl.Fork(Child{Files: []*os.File{inR}, Dups: []Dup{{File: 0, Target: 0}}, Join: -1, Close: []int{3}})
	inR.Close()
	if err == nil || !strings.Contains(err.Error(), "clone3") {
		t.Fatalf("fork without a PID namespace of its own: %v, want clone3 to fail (tid taken)", err)
	}
	f, io := forkOne(t, tpl) // NewPID: works
	io.in.Write([]byte("q\n"))
	unix.Kill(f.Pid, unix.SIGKILL)
	done := make(chan error, 1)
	go func() { done <- tpl.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("template Close hangs after a failed threaded fork")
	}
}
