package procfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// victimEnv makes the test binary act as a victim process: it makes the
// objects of its mode with raw system calls (no Go poller, so the runtime
// adds no epoll or eventfd of its own), says on stdout which it made as
// "fd N" and "map HEXSTART" lines and "ready", and blocks reading stdin
// until it closes. victimDirEnv is a directory it may create files in.
const (
	victimEnv    = "CATALYZER_PROCFS_VICTIM"
	victimDirEnv = "CATALYZER_PROCFS_VICTIM_DIR"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(victimEnv); mode != "" {
		if err := victim(mode, os.Getenv(victimDirEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "victim:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func victim(mode, dir string) error {
	closeInherited()
	var out strings.Builder
	fd := func(n int) { fmt.Fprintf(&out, "fd %d\n", n) }
	mmap := func(fd, prot, flags int, shared bool) error {
		b, err := unix.Mmap(fd, 0, 4096, prot, flags)
		if err != nil {
			return err
		}
		b[0] = 1 // touch it
		if shared {
			fmt.Fprintf(&out, "map %x\n", &b[0])
		}
		return nil
	}
	rw := unix.PROT_READ | unix.PROT_WRITE
	switch mode {
	case "peek": // run as nobody: pid 1 is not ours to read
		_, err1 := Maps(1)
		_, err2 := FDs(1)
		_, err3 := SharedObjects(1, nil)
		for _, err := range []error{err1, err2, err3} {
			if !errors.Is(err, fs.ErrPermission) {
				return fmt.Errorf("want an error wrapping fs.ErrPermission, got %v", err)
			}
		}
		return nil
	case "shared":
		if err := mmap(-1, rw, unix.MAP_SHARED|unix.MAP_ANONYMOUS, true); err != nil {
			return fmt.Errorf("shared anonymous: %w", err)
		}
		id, err := unix.SysvShmGet(unix.IPC_PRIVATE, 4096, unix.IPC_CREAT|0o600)
		if err != nil {
			return fmt.Errorf("shmget: %w", err)
		}
		seg, err := unix.SysvShmAttach(id, 0, 0)
		unix.SysvShmCtl(id, unix.IPC_RMID, nil) // gone once detached
		if err != nil {
			return fmt.Errorf("shmat: %w", err)
		}
		fmt.Fprintf(&out, "map %x\n", &seg[0])
		// POSIX shared memory, where there is a /dev/shm.
		shm := fmt.Sprintf("/dev/shm/catalyzer-procfs-%d", os.Getpid())
		if sfd, err := unix.Open(shm, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600); err == nil {
			unix.Unlink(shm)
			err1 := unix.Ftruncate(sfd, 4096)
			err2 := mmap(sfd, rw, unix.MAP_SHARED, true)
			unix.Close(sfd)
			if err := errors.Join(err1, err2); err != nil {
				return fmt.Errorf("/dev/shm: %w", err)
			}
		}
		mfd, err := unix.MemfdCreate("procfs victim", unix.MFD_CLOEXEC)
		if err != nil {
			return err
		}
		fd(mfd)
		if err := unix.Ftruncate(mfd, 4096); err != nil {
			return err
		}
		if err := mmap(mfd, rw, unix.MAP_SHARED, true); err != nil {
			return fmt.Errorf("memfd: %w", err)
		}
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return err
		}
		fd(p[0])
		fd(p[1])
		sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		fd(sp[0])
		fd(sp[1])
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			return err
		}
		fd(efd)
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return err
		}
		fd(ep)
		fifo := filepath.Join(dir, "fifo")
		if err := unix.Mkfifo(fifo, 0o600); err != nil {
			return err
		}
		ff, err := unix.Open(fifo, unix.O_RDWR|unix.O_CLOEXEC, 0) // O_RDWR: no wait for a peer
		if err != nil {
			return err
		}
		fd(ff)
	case "plain":
		if err := mmap(-1, rw, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, false); err != nil {
			return err
		}
		name := filepath.Join(dir, "file")
		f, err := unix.Open(name, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		if err := unix.Ftruncate(f, 4096); err != nil {
			return err
		}
		if err := mmap(f, rw, unix.MAP_PRIVATE, false); err != nil {
			return err
		}
		if _, err := unix.Mmap(f, 0, 4096, unix.PROT_READ, unix.MAP_SHARED); err != nil {
			return err // read-only shared file mappings are fine
		}
		if _, err := unix.PidfdOpen(os.Getpid(), 0); err != nil {
			return err // pidfds are fine
		}
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	out.WriteString("ready\n")
	if _, err := unix.Write(1, []byte(out.String())); err != nil {
		return err
	}
	var b [1]byte
	for {
		n, err := unix.Read(0, b[:])
		if n == 0 || (err != nil && err != unix.EINTR) {
			return nil
		}
	}
}

// closeInherited closes the descriptors the victim inherited beyond stdio
// (whatever runs the tests may leak some); the runtime's own are
// close-on-exec and stay.
func closeInherited() {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil || lim.Cur > 1<<16 {
		lim.Cur = 1 << 16
	}
	for fd := 3; fd < int(lim.Cur); fd++ {
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && fl&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
}

// requiresRoot skips t without root, and fails it under CI=true, where
// the kernel-facing tests must run for real.
func requiresRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the kernel-facing tests need root, and CI=true: CI must run the tests as root")
		}
		t.Skip("the kernel-facing tests need root: run the tests as root, as CI does")
	}
}

// victimProc is a running victim and what it says it made.
type victimProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	fds   []int
	maps  []string // start addresses, hex
}

// startVictim starts a victim; it is stopped (stdin closed, waited for) at
// the end of the test, unless the test stops it itself.
func startVictim(t *testing.T, mode string) *victimProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), victimEnv+"="+mode, victimDirEnv+"="+t.TempDir())
	errf, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	cmd.Stderr = errf
	v := &victimProc{cmd: cmd}
	if v.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		v.stdin.Close()
		if cmd.ProcessState == nil {
			cmd.Wait()
		}
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var n int
		var addr string
		switch line := sc.Text(); {
		case line == "ready":
			return v
		case strings.HasPrefix(line, "fd "):
			fmt.Sscan(line[3:], &n)
			v.fds = append(v.fds, n)
		case strings.HasPrefix(line, "map "):
			fmt.Sscan(line[4:], &addr)
			v.maps = append(v.maps, addr)
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	msg, _ := os.ReadFile(errf.Name())
	t.Fatalf("victim %s did not get ready: %s", mode, msg)
	return nil
}

func (v *victimProc) pid() int { return v.cmd.Process.Pid }

// stdio is the victim's stdin, stdout and stderr: pipes and a file of the
// test's, not objects under test.
var stdio = []int{0, 1, 2}

// objectsOf indexes objects by the fd number or mapping start they name.
func objectsOf(t *testing.T, objs []Object) (fds map[int]Object, maps map[string]Object) {
	t.Helper()
	fds, maps = map[int]Object{}, map[string]Object{}
	for _, o := range objs {
		var n int
		var r string
		switch {
		case strings.HasPrefix(o.What, "fd "):
			if _, err := fmt.Sscanf(o.What, "fd %d (", &n); err != nil {
				t.Fatalf("object %q: %v", o, err)
			}
			fds[n] = o
		case strings.HasPrefix(o.What, "mapping "):
			fmt.Sscanf(o.What, "mapping %s", &r)
			start, _, _ := strings.Cut(r, "-")
			maps[start] = o
		default:
			t.Fatalf("object %q names neither an fd nor a mapping", o)
		}
		if o.Why == "" || o.String() != o.What+": "+o.Why {
			t.Errorf("object %q: no reason", o)
		}
	}
	return fds, maps
}

func TestSharedObjectsVictim(t *testing.T) {
	requiresRoot(t)
	v := startVictim(t, "shared")
	objs, err := SharedObjects(v.pid(), stdio)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		t.Log(o)
	}
	fds, maps := objectsOf(t, objs)
	for _, n := range v.fds {
		if _, ok := fds[n]; !ok {
			t.Errorf("fd %d not reported", n)
		}
		delete(fds, n)
	}
	for _, a := range v.maps {
		if _, ok := maps[a]; !ok {
			t.Errorf("mapping at %s not reported", a)
		}
		delete(maps, a)
	}
	for _, o := range fds {
		t.Errorf("reported an fd the victim did not make: %s", o)
	}
	for _, o := range maps {
		t.Errorf("reported a mapping the victim did not make: %s", o)
	}
	// The kinds, named as the fd table shows them.
	want := []string{"/memfd:procfs victim", "pipe:[", "pipe:[", "socket:[", "socket:[",
		"anon_inode:[eventfd]", "anon_inode:[eventpoll]", "fifo"}
	fds, maps = objectsOf(t, objs)
	for i, n := range v.fds {
		if o := fds[n]; !strings.Contains(o.What, want[i]) {
			t.Errorf("fd %d reported as %q, want it to name %q", n, o, want[i])
		}
	}
	for _, a := range v.maps {
		if o := maps[a]; !strings.Contains(o.What, " rw-s /") {
			t.Errorf("mapping %s reported as %q", a, o)
		}
	}
	// In order: mappings by address, then fds by number.
	if !slices.IsSortedFunc(objs, func(a, b Object) int {
		ka, kb := orderKey(a), orderKey(b)
		return slices.Compare(ka[:], kb[:])
	}) {
		t.Errorf("objects out of order: %q", objs)
	}

	// allowFDs: what is allowed is not looked at; stdio unallowed shows up.
	objs, err = SharedObjects(v.pid(), append(slices.Clone(stdio), v.fds...))
	if err != nil {
		t.Fatal(err)
	}
	if fds, maps := objectsOf(t, objs); len(fds) != 0 || len(maps) != len(v.maps) {
		t.Errorf("every fd allowed: got %q", objs)
	}
	objs, err = SharedObjects(v.pid(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if fds, _ := objectsOf(t, objs); !strings.Contains(fds[0].What, "pipe:[") || !strings.Contains(fds[1].What, "pipe:[") {
		t.Errorf("nothing allowed: stdin and stdout (pipes) not reported: %q", objs)
	}
}

// orderKey is an object's place in SharedObjects' order: mappings by
// start address, then fds by number.
func orderKey(o Object) [2]uint64 {
	var n uint64
	if _, err := fmt.Sscanf(o.What, "mapping %x-", &n); err == nil {
		return [2]uint64{0, n}
	}
	fmt.Sscanf(o.What, "fd %d ", &n)
	return [2]uint64{1, n}
}

func TestSharedObjectsPlainVictim(t *testing.T) {
	requiresRoot(t)
	v := startVictim(t, "plain")
	objs, err := SharedObjects(v.pid(), stdio)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 0 {
		t.Errorf("a victim with private mappings, a file and a pidfd shares %q", objs)
	}
	// And the plain readers see what it made.
	fds, err := FDs(v.pid())
	if err != nil {
		t.Fatal(err)
	}
	var file, pidfd bool
	for _, f := range fds {
		file = file || strings.HasSuffix(f.Link, "/file") && f.Info.Flags&unix.O_ACCMODE == unix.O_RDWR && f.Info.Flags&unix.O_CLOEXEC != 0
		pidfd = pidfd || f.Link == "anon_inode:[pidfd]"
	}
	if !file || !pidfd || fds[0].Num != 0 {
		t.Errorf("FDs = %+v: want stdio, the file (O_RDWR|O_CLOEXEC) and a pidfd", fds)
	}
	ms, err := Maps(v.pid())
	if err != nil {
		t.Fatal(err)
	}
	var roShared bool
	for _, m := range ms {
		roShared = roShared || strings.HasSuffix(m.Path, "/file") && m.Perms == Perms{Read: true, Shared: true}
	}
	if !roShared {
		t.Errorf("Maps shows no read-only shared mapping of the file: %v", ms)
	}
	st, err := Status(v.pid())
	if err != nil || st["Pid"] != fmt.Sprint(v.pid()) {
		t.Errorf("Status = %q, %v", st, err)
	}
	tids, err := Threads(v.pid())
	if err != nil || len(tids) == 0 || tids[0] != v.pid() {
		t.Errorf("Threads = %v, %v (a Go process: main thread first)", tids, err)
	}
}

// TestExited: a zombie and a reaped process are errors wrapping
// fs.ErrNotExist from every function, never an empty answer.
func TestExited(t *testing.T) {
	requiresRoot(t)
	v := startVictim(t, "shared")
	pid := v.pid()
	calls := map[string]func() error{
		"Maps":          func() error { _, err := Maps(pid); return err },
		"FDs":           func() error { _, err := FDs(pid); return err },
		"Status":        func() error { _, err := Status(pid); return err },
		"Threads":       func() error { _, err := Threads(pid); return err },
		"SharedObjects": func() error { _, err := SharedObjects(pid, nil); return err },
	}
	if err := v.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Wait for the exit but leave the zombie.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("zombie: %s = %v, want an error wrapping fs.ErrNotExist", name, err)
		}
	}
	v.cmd.Wait()
	for name, call := range calls {
		if err := call(); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("reaped: %s = %v, want an error wrapping fs.ErrNotExist", name, err)
		}
	}
}

// TestNoAccess: a process we may not ptrace-read is an error wrapping
// fs.ErrPermission. The test binary runs again as nobody.
func TestNoAccess(t *testing.T) {
	requiresRoot(t)
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // t.TempDir's are 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "procfs.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), victimEnv+"=peek")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("as nobody: %v: %s", err, out)
	}
}

func TestBadPID(t *testing.T) {
	for _, pid := range []int{0, -1} {
		if _, err := SharedObjects(pid, nil); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("SharedObjects(%d) = %v, want ErrInvalid", pid, err)
		}
		if _, err := Maps(pid); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Maps(%d) = %v, want ErrInvalid", pid, err)
		}
	}
}

// TestThreadOfOwn: Thread reads one thread of this process as the kernel
// keeps it: its own name (set on that thread alone) and its tid; an
// unknown tid is an error wrapping fs.ErrNotExist.
func TestThreadOfOwn(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	tids := make(chan int)
	// A goroutine locked to a thread of its own, other than the main
	// thread (each that lands on it keeps it, so the next cannot).
	for tid := os.Getpid(); tid == os.Getpid(); tid = <-tids {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			tids <- unix.Gettid()
			<-done
		}()
	}
	var tid int
	go func() {
		runtime.LockOSThread()
		tid = unix.Gettid()
		if tid != os.Getpid() {
			unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("procfs-thr\x00")[0])), 0, 0, 0)
		}
		tids <- tid
		<-done
	}()
	if <-tids == os.Getpid() {
		t.Skip("the named goroutine ran on the main thread")
	}
	ti, err := Thread(os.Getpid(), tid)
	if err != nil {
		t.Fatal(err)
	}
	if ti.Comm != "procfs-thr" || ti.NSTID != tid || ti.Uid == "" {
		t.Fatalf("thread %d: %+v", tid, ti)
	}
	if main, err := Thread(os.Getpid(), os.Getpid()); err != nil || main.Comm == "procfs-thr" {
		t.Fatalf("main thread: %+v %v", main, err)
	}
	if _, err := Thread(os.Getpid(), 1<<22+1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("unknown tid: %v, want fs.ErrNotExist", err)
	}
}
