package kobj

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// victim runs testdata/objects.c (or src, if given) and talks to it.
type victim struct {
	cmd *exec.Cmd
	in  *os.File
	out *bufio.Reader
	shm uint64
}

func startVictim(t *testing.T, src string) *victim {
	t.Helper()
	testutil.RequiresRoot(t)
	if _, err := exec.LookPath("gcc"); err != nil {
		testutil.Missing(t, "gcc, to build the victim")
	}
	if src == "" {
		b, err := os.ReadFile("testdata/objects.c")
		if err != nil {
			t.Fatal(err)
		}
		src = string(b)
	}
	bin := filepath.Join(t.TempDir(), "victim")
	cc := exec.Command("gcc", "-O1", "-o", bin, "-x", "c", "-")
	cc.Stdin = strings.NewReader(src)
	if out, err := cc.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	cmd := exec.Command(bin)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); inW.Close(); outR.Close() })
	v := &victim{cmd: cmd, in: inW, out: bufio.NewReader(outR)}
	line, err := v.out.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	fmt.Sscanf(line, "ready %v", &v.shm)
	return v
}

func (v *victim) ask(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := v.in.Write([]byte(cmd)); err != nil {
		t.Fatal(err)
	}
	line, err := v.out.ReadString('\n')
	if err != nil {
		t.Fatalf("victim after %q: %v", cmd, err)
	}
	return strings.TrimSpace(line)
}

// TestCaptureAndRecreate: Capture reads every object of the victim with
// its state; AddTo, run by the victim itself, replaces each with a fresh
// one in the same state on the same numbers; the old objects (held here
// through pidfd_getfd copies) are no longer the victim's.
func TestCaptureAndRecreate(t *testing.T) {
	v := startVictim(t, "")
	pid := v.cmd.Process.Pid
	tr := ptrace.NewTracer()
	defer tr.Close()
	tc, err := tr.Seize(pid)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := Capture(pid, []int{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tbl.Summary(), "2 eventfd, 1 timerfd, 1 signalfd, 2 epoll (3 watches), 1 pipe (5 bytes), 2 socket pair (11 bytes queued), shared memory 8 KiB"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	for _, o := range tbl.Objects {
		switch o.Kind {
		case Eventfd:
			if c := o.Eventfd.Count; c != 5 && c != 3 {
				t.Errorf("eventfd count %d", c)
			}
			if o.Eventfd.Count == 5 && len(o.Descs[0].FDs) != 2 {
				t.Errorf("eventfd on fd 10 has descriptors %v, want 10 and its dup 20", o.Descs[0].FDs)
			}
		case Pipe:
			if string(o.Data) != "hello" || o.Descs[0].Flags&unix.O_NONBLOCK == 0 {
				t.Errorf("pipe %+v", o)
			}
		}
	}
	// Round trip through the image encoding first: what runs is what an
	// image would restore.
	tbl, err = Decode(tbl.Encode())
	if err != nil {
		t.Fatal(err)
	}

	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	oldEvent, err := unix.PidfdGetfd(pidfd, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(oldEvent)
	oldPipeW, err := unix.PidfdGetfd(pidfd, 13, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(oldPipeW)
	oldSock, err := unix.PidfdGetfd(pidfd, 21, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(oldSock)
	before := v.inodes(t)

	b := ptrace.NewBatch()
	tbl.AddTo(b)
	if _, err := tc.Exec(b); err != nil {
		t.Fatalf("re-create batch: %v", err)
	}
	if err := tc.Detach(); err != nil {
		t.Fatal(err)
	}
	// The old objects are now only ours: what we do to them the victim
	// does not see.
	unix.Write(oldEvent, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	unix.Write(oldPipeW, []byte("XX"))
	unix.Write(oldSock, []byte("XX"))

	after := v.ask(t, "i")
	if shm := v.shmInode(t); strings.HasSuffix(before, fmt.Sprint(" shm ", shm)) {
		t.Errorf("shared memory at %#x is still object %d", v.shm, shm)
	}
	if strings.Fields(after)[3] == strings.Fields(before)[3] {
		t.Errorf("inodes after re-creation %q are the old ones", after)
	}
	if !strings.HasSuffix(after, "flags20=0") {
		t.Errorf("fd 20 (a dup without close-on-exec): %q", after)
	}
	for _, c := range []struct{ cmd, want string }{
		{"n", "n 1 1515"},      // the nested epoll sees the inner one ready
		{"w", "w 2 1010 1212"}, // level-triggered eventfd and the pipe with data
		{"e", "e 8 5"},         // the count, not our extra write
		{"s", "s 8 1"},         // semaphore mode
		{"p", "p 5 hello"},     // the bytes, not ours
		{"m", "m shared-page-one shared-page-two"},
		{"g", "g 128 10"},
		{"k", "k 4 sock"},
		{"d", "d 3 one 4 two!"},
	} {
		if got := v.ask(t, c.cmd); got != c.want && !(c.cmd == "w" && got == "w 2 1212 1010") {
			t.Errorf("%s: victim said %q, want %q", c.cmd, got, c.want)
		}
	}
	if got := v.ask(t, "t"); got != "t 99 7" && got != "t 98 7" {
		t.Errorf("timer: victim said %q, want about 99 s left and a 7 s interval", got)
	}
	if got := v.ask(t, "e"); got != "e -1 0" {
		t.Errorf("eventfd read twice: %q, want EAGAIN (count consumed)", got)
	}
}

// inodes is what the victim's "i" answers, read from outside while it
// is stopped, plus the inode of its shared memory.
func (v *victim) inodes(t *testing.T) string {
	t.Helper()
	var st unix.Stat_t
	var parts []string
	for fd := 10; fd <= 17; fd++ {
		if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", v.cmd.Process.Pid, fd), &st); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, fmt.Sprint(st.Ino))
	}
	return "i " + strings.Join(parts, " ") + " shm " + fmt.Sprint(v.shmInode(t))
}

func (v *victim) shmInode(t *testing.T) uint64 {
	t.Helper()
	maps, err := procfs.Maps(v.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		if m.Start == v.shm {
			return m.Inode
		}
	}
	t.Fatalf("no mapping at %#x", v.shm)
	return 0
}

// TestCaptureRefuses: objects no copy can be given its own of are named
// in a *SharedError that maps to 501.
func TestCaptureRefuses(t *testing.T) {
	v := startVictim(t, `#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
int main(void) {
	close_range(3, ~0U, 0);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	int m = memfd_create("x", 0);
	ftruncate(m, 4096);
	mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
	printf("ready\n");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) == 1) {}
	return 0;
}`)
	pid := v.cmd.Process.Pid
	_, err := Capture(pid, []int{0, 1, 2})
	var se *SharedError
	if !errors.As(err, &se) || !errors.Is(err, errdefs.ErrNotSupported) {
		t.Fatalf("Capture = %v, want a *SharedError wrapping ErrNotSupported", err)
	}
	msg := err.Error()
	for _, want := range []string{"memfd", "socket"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal %q does not name the %s", msg, want)
		}
	}
	// The victim's stdout pipe: its read end is ours. Not skipped, it is
	// refused for that reason.
	_, err = Capture(pid, nil)
	if err == nil || !strings.Contains(err.Error(), "other end is outside") {
		t.Errorf("Capture without skipping stdio = %v, want the stdout pipe refused", err)
	}
}

// TestCaptureRefusesReusedWatch: an epoll holding two registrations by one
// descriptor number (the first file's number closed, then reused) cannot
// be re-created, where each number is registered once (EEXIST).
func TestCaptureRefusesReusedWatch(t *testing.T) {
	v := startVictim(t, `#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>
#include <sys/epoll.h>
int main(void) {
	close_range(3, ~0U, 0);
	int e = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN};
	for (int i = 0; i < 2; i++) {
		int p[2];
		pipe(p);
		dup2(p[0], 50);
		epoll_ctl(e, EPOLL_CTL_ADD, 50, &ev);
		if (i == 0) close(50);
	}
	printf("ready\n");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) == 1) {}
	return 0;
}`)
	_, err := Capture(v.cmd.Process.Pid, []int{0, 1, 2})
	if !errors.Is(err, errdefs.ErrNotSupported) || !strings.Contains(err.Error(), "several files by descriptor 50") {
		t.Fatalf("Capture = %v, want a refusal of the epoll's reused descriptor 50", err)
	}
	t.Log(err)
}

// TestFifoNotAPipe: a FIFO object whose path names a regular file (a
// hostile image's) stops the batch before anything is written to it or
// put on a descriptor.
func TestFifoNotAPipe(t *testing.T) {
	v := startVictim(t, "")
	tr := ptrace.NewTracer()
	defer tr.Close()
	tc, err := tr.Seize(v.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(path, []byte("orig"), 0o666); err != nil {
		t.Fatal(err)
	}
	tbl := &Table{Objects: []Object{{Kind: Fifo, Path: path, PipeSize: 65536, Data: []byte("evil"),
		Descs: []Desc{{Flags: unix.O_RDWR, FDs: []FD{{Num: 40}}}}}}}
	if tbl, err = Decode(tbl.Encode()); err != nil {
		t.Fatal(err)
	}
	b := ptrace.NewBatch()
	tbl.AddTo(b)
	if _, err := tc.Exec(b); !errors.Is(err, unix.EBADF) {
		t.Errorf("batch on a regular file: %v, want EBADF (F_GETPIPE_SZ)", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "orig" {
		t.Errorf("file now holds %q", got)
	}
	if _, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/40", v.cmd.Process.Pid)); err == nil {
		t.Errorf("fd 40 was made")
	}
}
