package ptrace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

const atFDCWD = -100

// TestExecutorConstants checks the entry points the Go side relies on
// against the checked-in executor bytes.
func TestExecutorConstants(t *testing.T) {
	c := executorCode
	if len(c) > execCodeSize {
		t.Fatalf("executor is %d bytes, more than its page", len(c))
	}
	if !bytes.Equal(c[execSyscallOff:execSyscallTrap], []byte{0x0f, 0x05, 0xcc}) {
		t.Errorf("offset 0: % x, want syscall; int3", c[:3])
	}
	if c[execEntryOff] != 0xfc || c[execEntryOff+1] != 0xe8 {
		t.Errorf("entry: % x, want cld; call", c[execEntryOff:execEntryOff+2])
	}
	if c[execDoneTrap-1] != 0xcc || !bytes.Equal(c[execDoneTrap:execDoneTrap+2], []byte{0xeb, 0xfd}) {
		t.Errorf("done: % x, want int3; jmp done", c[execDoneTrap-1:execDoneTrap+2])
	}
}

// TestExecutorRebuild rebuilds the executor from executor.c and compares
// it with the checked-in bytes (run executor/build.sh after editing it).
func TestExecutorRebuild(t *testing.T) {
	for _, tool := range []string{"gcc", "objcopy", "objdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.Missing(t, "needs %s to rebuild the executor", tool)
		}
	}
	out := filepath.Join(t.TempDir(), "executor.bin")
	if b, err := exec.Command("sh", "executor/build.sh", out).CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, executorCode) {
		t.Fatalf("executor.c builds to %d bytes that differ from executor_amd64.bin (%d bytes): run executor/build.sh (different gcc? then check the disassembly and commit)", len(got), len(executorCode))
	}
}

func sampleBatch() *Batch {
	b := NewBatch()
	fd := b.Add(unix.SYS_OPENAT, Lit(atFDCWD), b.String("/proc/self/status"), Lit(unix.O_RDONLY), Lit(0))
	st := b.Space(int(unsafe.Sizeof(unix.Stat_t{})))
	b.Add(unix.SYS_FSTAT, fd.Result(), st)
	p := b.Space(8)
	b.Add(unix.SYS_PIPE2, p, Lit(0))
	b.Add(unix.SYS_WRITE, Load32(p, 4), b.String("x"), Lit(1)).With(IgnoreError)
	b.Add(unix.SYS_CLOSE, fd.Result()).With(StopAfter)
	b.Add(unix.SYS_WAIT4, Lit(-1), Lit(0), Lit(unix.WNOHANG|unix.WALL), Lit(0)).With(RepeatWhilePositive | IgnoreError)
	b.Add(unix.SYS_CLONE, Lit(int64(unix.SIGCHLD))).With(ForkPoint)
	return b
}

func TestBatchEncodeDecode(t *testing.T) {
	b := sampleBatch()
	enc := b.Encode()
	d, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.Encode(), enc) {
		t.Fatal("Decode(Encode(b)).Encode() differs")
	}
	if d.Len() != b.Len() || d.Entries()[1].Reloc != RelocResult|RelocData<<2 {
		t.Fatalf("decoded entries: %+v", d.Entries())
	}
}

func TestDecodeRejects(t *testing.T) {
	good := sampleBatch().Encode()
	le := binary.LittleEndian
	ent := func(i int) int { return headerSize + i*entrySize }
	for _, c := range []struct {
		name string
		edit func(b []byte) []byte
		want string
	}{
		{"short", func(b []byte) []byte { return b[:10] }, "shorter than the header"},
		{"magic", func(b []byte) []byte { b[0] ^= 1; return b }, "bad magic"},
		{"version", func(b []byte) []byte { le.PutUint16(b[4:], 2); return b }, "unsupported version"},
		{"entry size", func(b []byte) []byte { le.PutUint32(b[12:], 32); return b }, "entry size"},
		{"count", func(b []byte) []byte { le.PutUint32(b[8:], 1000); return b }, "outside the batch"},
		{"huge count", func(b []byte) []byte { le.PutUint32(b[8:], 1<<31); return b }, "entries (max"},
		{"total", func(b []byte) []byte { le.PutUint32(b[32:], uint32(len(b)+8)); return b }, "exceeds the buffer"},
		{"data offset", func(b []byte) []byte { le.PutUint32(b[20:], 1<<30); return b }, "outside the batch"},
		{"misaligned", func(b []byte) []byte { le.PutUint32(b[28:], le.Uint32(b[28:])+4); return b }, "aligned"},
		{"overlap", func(b []byte) []byte { le.PutUint32(b[28:], uint32(ent(0))); return b }, "overlap"},
		{"header flags", func(b []byte) []byte { b[36] = 1; return b }, "header flags"},
		{"flags", func(b []byte) []byte { le.PutUint16(b[ent(0)+4:], 0x80); return b }, "unknown flags"},
		{"forward", func(b []byte) []byte { le.PutUint64(b[ent(1)+16:], 1); return b }, "has not run yet"},
		{"self", func(b []byte) []byte { le.PutUint64(b[ent(1)+16:], 5); return b }, "has not run yet"},
		{"data ptr", func(b []byte) []byte { le.PutUint64(b[ent(0)+24:], 1<<20); return b }, "past the data area"},
		{"load32", func(b []byte) []byte { le.PutUint64(b[ent(3)+16:], 2); return b }, "loads 4 bytes"},
		{"reloc bits", func(b []byte) []byte { le.PutUint32(b[ent(0)+8:], 1<<12); return b }, "above argument 6"},
	} {
		b := c.edit(append([]byte(nil), good...))
		_, err := Decode(b)
		if err == nil || !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an ErrInvalid containing %q", c.name, err, c.want)
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(sampleBatch().Encode())
	f.Add(NewBatch().Encode())
	f.Add([]byte("CZBT"))
	f.Fuzz(func(t *testing.T, buf []byte) {
		b, err := Decode(buf)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes canonically and decodes again.
		enc := b.Encode()
		b2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if !bytes.Equal(b2.Encode(), enc) {
			t.Fatal("encoding is not stable")
		}
	})
}

func TestExecRelocations(t *testing.T) {
	v := startVictim(t, "echo")
	tr := newTracer(t)
	tc := seize(t, tr, v.pid)

	file := filepath.Join(t.TempDir(), "twelve")
	os.WriteFile(file, []byte("twelve bytes"), 0o644)

	b := NewBatch()
	fd := b.Add(unix.SYS_OPENAT, Lit(atFDCWD), b.String(file), Lit(unix.O_RDONLY), Lit(0))
	st := b.Space(int(unsafe.Sizeof(unix.Stat_t{})))
	b.Add(unix.SYS_FSTAT, fd.Result(), st)
	buf := b.Space(16)
	rd := b.Add(unix.SYS_PREAD64, fd.Result(), buf, Lit(16), Lit(7))
	p := b.Space(8) // int[2] from pipe2
	b.Add(unix.SYS_PIPE2, p, Lit(unix.O_CLOEXEC))
	wr := b.Add(unix.SYS_WRITE, Load32(p, 4), b.String("xyz"), Lit(3))
	rp := b.Add(unix.SYS_READ, Load32(p, 0), b.Space(8), Lit(8))
	b.Add(unix.SYS_CLOSE, Load32(p, 0))
	b.Add(unix.SYS_CLOSE, Load32(p, 4))
	cl := b.Add(unix.SYS_CLOSE, fd.Result())

	rt := tc.RoundTrips()
	if err := tc.InstallExecutor(); err != nil {
		t.Fatal(err)
	}
	t.Logf("installing the executor: %d round trips", tc.RoundTrips()-rt)
	rt = tc.RoundTrips()
	res, err := tc.Exec(b)
	if err != nil {
		t.Fatal(err)
	}
	if n := tc.RoundTrips() - rt; n != 1 {
		t.Errorf("batch of %d syscalls took %d round trips, want 1", b.Len(), n)
	}
	if res.Status != StatusDone || res.Value(fd) < 0 || res.Value(rd) != 5 || res.Value(wr) != 3 || res.Value(rp) != 3 || res.Value(cl) != 0 {
		t.Fatalf("results %v %+v", res.Status, res.Values)
	}
	var stat unix.Stat_t
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&stat)), unsafe.Sizeof(stat)), res.Data(st, int(unsafe.Sizeof(stat))))
	if stat.Size != 12 || stat.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Fatalf("fstat in the tracee: size %d mode %o", stat.Size, stat.Mode)
	}
	if got := string(res.Data(buf, 5)); got != "bytes" {
		t.Fatalf("pread read %q", got)
	}
	// The fd was closed in the tracee: nothing leaked.
	if _, err := os.Readlink("/proc/" + strconv.Itoa(v.pid) + "/fd/" + strconv.Itoa(int(res.Value(fd)))); err == nil {
		t.Errorf("fd %d still open in the victim", res.Value(fd))
	}
	tc.Detach()
	if got := v.ask(t); got != "pong "+strconv.Itoa(v.pid) {
		t.Fatalf("after the batch: %q", got)
	}
}

func TestExecErrors(t *testing.T) {
	v := startVictim(t, "echo")
	tr := newTracer(t)
	tc := seize(t, tr, v.pid)

	b := NewBatch()
	b.Add(unix.SYS_GETPID)
	b.Add(unix.SYS_DUP2, Lit(999), Lit(998))
	b.Add(unix.SYS_GETPID)
	res, err := tc.Exec(b)
	var ee *EntryError
	if !errors.As(err, &ee) || ee.Index != 1 || !errors.Is(err, unix.EBADF) {
		t.Fatalf("StopOnError: %v, want entry 1 EBADF", err)
	}
	if err.Error() != "entry 1 (dup2): EBADF (bad file descriptor)" {
		t.Errorf("message %q", err)
	}
	if res.Status != StatusError || res.Index != 1 || res.Values[0] != int64(v.pid) || res.Values[2] != 0 {
		t.Fatalf("results %v %d %v", res.Status, res.Index, res.Values)
	}

	b = NewBatch()
	b.Add(unix.SYS_DUP2, Lit(999), Lit(998)).With(IgnoreError)
	b.Add(unix.SYS_GETPID)
	res, err = tc.Exec(b)
	if err != nil || res.Status != StatusDone || res.Values[0] != -int64(unix.EBADF) || res.Values[1] != int64(v.pid) {
		t.Fatalf("IgnoreError: %v %+v", err, res)
	}

	// StopAfter pauses; Resume goes on; registers come back at the end.
	b = NewBatch()
	b.Add(unix.SYS_GETPID).With(StopAfter)
	b.Add(unix.SYS_GETPPID)
	res, err = tc.Exec(b)
	if err != nil || res.Status != StatusPaused || res.Index != 0 {
		t.Fatalf("StopAfter: %v %+v", err, res)
	}
	if err := tc.Detach(); !errors.Is(err, ErrState) {
		t.Fatalf("Detach inside a paused batch: %v, want ErrState", err)
	}
	res, err = tc.Resume(b)
	if err != nil || res.Status != StatusDone || res.Values[1] != int64(os.Getpid()) {
		t.Fatalf("Resume: %v %+v", err, res)
	}
	tc.Detach()
	if got := v.ask(t); got != "pong "+strconv.Itoa(v.pid) {
		t.Fatalf("after the batches: %q", got)
	}
}

// children returns the pids whose parent is ppid, with their state letter.
func children(ppid int) map[int]byte {
	out := map[int]byte{}
	pids, _ := procfs.PIDs()
	for _, pid := range pids {
		if st, err := procfs.Stat(pid); err == nil && st.PPID() == ppid {
			out[pid] = st.State
		}
	}
	return out
}

func TestExecReapsZombies(t *testing.T) {
	v := startVictim(t, "echo")
	tr := newTracer(t)
	// Children must run freely to exit: no auto-attach.
	tc := seize(t, tr, v.pid, TraceFork(false), TraceClone(false))

	fork := NewBatch()
	fork.Add(unix.SYS_CLONE, Lit(int64(unix.SIGCHLD)), Lit(0), Lit(0), Lit(0), Lit(0)).With(ForkPoint)
	fork.Add(unix.SYS_EXIT_GROUP, Lit(0))
	for i := 0; i < 3; i++ {
		res, err := tc.Exec(fork)
		if err != nil || res.Status != StatusForkParent || res.Values[0] <= 0 {
			t.Fatalf("fork %d: %v %+v", i, err, res)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		zombies := 0
		for _, st := range children(v.pid) {
			if st == 'Z' {
				zombies++
			}
		}
		if zombies == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("children of the victim: %v, want 3 zombies", children(v.pid))
		}
		time.Sleep(time.Millisecond)
	}
	reap := NewBatch()
	w := reap.Add(unix.SYS_WAIT4, Lit(-1), Lit(0), Lit(unix.WNOHANG|unix.WALL), Lit(0)).With(RepeatWhilePositive | IgnoreError)
	res, err := tc.Exec(reap)
	if err != nil || res.Value(w) != -int64(unix.ECHILD) {
		t.Fatalf("reap: %v %+v, want ECHILD after reaping all", err, res)
	}
	if c := children(v.pid); len(c) != 0 {
		t.Fatalf("children left: %v", c)
	}
	// The victim was sent SIGCHLD three times while held; Detach re-raises.
	t.Logf("intercepted signals: %v", tc.PendingSignals())
	tc.Detach()
	if got := v.ask(t); got != "pong "+strconv.Itoa(v.pid) {
		t.Fatalf("after the batches: %q", got)
	}
}

// TestExecRefreshesExecutor: code that patches the executor page between
// two batches (through /proc/PID/mem, as anything with the tracee's
// credentials can) does not run: every batch writes the code again.
func TestExecRefreshesExecutor(t *testing.T) {
	v := startVictim(t, "echo")
	tr := newTracer(t)
	tc := seize(t, tr, v.pid)
	b := NewBatch()
	b.Add(unix.SYS_GETPID)
	if _, err := tc.Exec(b); err != nil {
		t.Fatal(err)
	}
	mem, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", v.pid), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	// The attacker's patch: the batch entry becomes exit_group(66).
	patch := []byte{0xbf, 66, 0, 0, 0, 0xb8, 0xe7, 0, 0, 0, 0x0f, 0x05}
	if _, err := mem.WriteAt(patch, int64(tc.exec+execEntryOff)); err != nil {
		t.Fatal(err)
	}
	res, err := tc.Exec(b)
	if err != nil || res.Values[0] != int64(v.pid) {
		t.Fatalf("batch after a patch of the executor: %v %+v, want our getpid to run", err, res)
	}
	got := make([]byte, len(executorCode))
	if _, err := mem.ReadAt(got, int64(tc.exec)); err != nil || !bytes.Equal(got, executorCode) {
		t.Fatalf("executor page after the batch differs from ours (%v)", err)
	}
}
