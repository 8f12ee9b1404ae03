package procfs

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// TestReadersVictim reads every file the package reads from a live victim
// and checks each answer against what the victim is known to be.
func TestReadersVictim(t *testing.T) {
	requiresRoot(t)
	v := startVictim(t, "plain")
	pid := v.pid()

	st, err := Stat(pid)
	if err != nil || st.PID != pid || st.PPID() != os.Getpid() || st.Exited() || st.NumFields() < 52 {
		t.Errorf("Stat = %+v, %v", st, err)
	}
	if s, err := State(pid); err != nil || s != st.State {
		t.Errorf("State = %c, %v", s, err)
	}
	if pids, err := PIDs(); err != nil || !slices.Contains(pids, pid) || !slices.Contains(pids, os.Getpid()) || !slices.IsSorted(pids) {
		t.Errorf("PIDs = %d pids, %v: want the victim and us, sorted", len(pids), err)
	}

	for _, ns := range []string{"mnt", "pid", "net"} {
		theirs, err1 := Namespace(pid, ns)
		ours, err2 := Namespace(Self, ns)
		if err := errors.Join(err1, err2); err != nil || theirs != ours || theirs.Ino == 0 {
			t.Errorf("Namespace(%s) = %v, ours %v: %v", ns, theirs, ours, err)
		}
		l1, err1 := NSLink(pid, ns)
		l2, err2 := NSLink(Self, ns)
		if err := errors.Join(err1, err2); err != nil || l1 != l2 || !strings.HasPrefix(l1, ns+":[") {
			t.Errorf("NSLink(%s) = %q, ours %q: %v", ns, l1, l2, err)
		}
	}
	if f, err := OpenNamespace(pid, "user"); err != nil {
		t.Errorf("OpenNamespace(user) = %v", err)
	} else {
		var st unix.Stat_t
		theirs, _ := Namespace(pid, "user")
		if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Ino != theirs.Ino {
			t.Errorf("OpenNamespace(user) opened inode %d, want %d (%v)", st.Ino, theirs.Ino, err)
		}
		f.Close()
	}
	if cwd, err := Link(pid, "cwd"); err != nil || cwd == "" {
		t.Errorf("Link(cwd) = %q, %v", cwd, err)
	}
	if exe, err := Link(pid, "exe"); err != nil || !strings.HasSuffix(exe, ".test") {
		t.Errorf("Link(exe) = %q, %v", exe, err)
	}

	ms, err := Mounts(pid)
	if err != nil || len(ms) == 0 || !slices.ContainsFunc(ms, func(m Mount) bool { return m.MountPoint == "/" }) {
		t.Errorf("Mounts = %d mounts, %v: want the root among them", len(ms), err)
	}
	if ours, err := Mounts(Self); err != nil || len(ours) == 0 {
		t.Errorf("Mounts(Self) = %d mounts, %v", len(ours), err)
	}

	links, err := FDLinks(pid)
	if err != nil || len(links) < 3 || !strings.HasPrefix(links[0], "pipe:[") {
		t.Errorf("FDLinks = %v, %v: want stdin a pipe", links, err)
	}
	if fst, err := StatFD(pid, 0); err != nil || fst.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("StatFD(0) = %#o, %v: want a FIFO (the stdin pipe)", fst.Mode, err)
	}
	if _, err := StatFD(pid, 999); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("StatFD(999) = %v, want fs.ErrNotExist", err)
	}

	auxv, err := Auxv(pid)
	if err != nil {
		t.Fatal(err)
	}
	vdso, ok := AuxvValue(auxv, AtSysinfoEhdr)
	maps, err := Maps(pid)
	if err != nil {
		t.Fatal(err)
	}
	var stack Mapping
	for _, m := range maps {
		if m.Path == "[vdso]" && (!ok || m.Start != vdso) {
			t.Errorf("AT_SYSINFO_EHDR = %#x, %v; [vdso] at %#x", vdso, ok, m.Start)
		}
		if m.Path == "[stack]" {
			stack = m
		}
	}

	sm, err := Smaps(pid)
	if err != nil || len(sm) != len(maps) {
		t.Fatalf("Smaps = %d entries, %v; maps has %d", len(sm), err, len(maps))
	}
	for i, e := range sm {
		if e.Mapping != maps[i] {
			t.Errorf("smaps %d = %v, maps %v", i, e.Mapping, maps[i])
		}
		if e.Path == "[stack]" && (!e.HasFlag("gd") || e.Fields["Rss"] == 0) {
			t.Errorf("[stack] in smaps = %+v: want VmFlags gd and some Rss", e)
		}
	}
	if pss, err := PSS(pid); err != nil || pss <= 0 {
		t.Errorf("PSS = %d, %v", pss, err)
	}

	pm, err := OpenPagemap(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	es, err := pm.Read(stack.Start, stack.End)
	if err != nil || uint64(len(es)) != stack.Len()/PageSize ||
		!slices.ContainsFunc(es, func(e PageEntry) bool { return e.Present() && !e.FileOrShared() }) {
		t.Errorf("pagemap of [stack] = %d entries, %v: want one present private page", len(es), err)
	}
	if _, err := pm.Read(stack.Start+1, stack.End); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("unaligned Read = %v, want ErrInvalid", err)
	}

	if n, err := Timers(pid); err != nil || n != 0 {
		t.Errorf("Timers = %d, %v", n, err)
	}
	if p, err := Personality(pid); err != nil || p != 0 {
		t.Errorf("Personality = %#x, %v", p, err)
	}
}

// TestStatZombie: Stat answers for a zombie (its exit code in field 52)
// where the other readers say it has exited.
func TestStatZombie(t *testing.T) {
	requiresRoot(t)
	v := startVictim(t, "plain")
	pid := v.pid()
	if err := v.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	st, err := Stat(pid)
	if err != nil || st.State != 'Z' || !st.Exited() {
		t.Fatalf("Stat of a zombie = %+v, %v", st, err)
	}
	if code, err := st.Int(52); err != nil || unix.WaitStatus(code).Signal() != unix.SIGKILL {
		t.Errorf("exit_code = %d, %v: want killed by SIGKILL", code, err)
	}
	for name, call := range map[string]func() error{
		"Auxv":    func() error { _, err := Auxv(pid); return err },
		"Smaps":   func() error { _, err := Smaps(pid); return err },
		"PSS":     func() error { _, err := PSS(pid); return err },
		"Mounts":  func() error { _, err := Mounts(pid); return err },
		"FDLinks": func() error { _, err := FDLinks(pid); return err },
		"NSLink":  func() error { _, err := NSLink(pid, "pid"); return err },
		"Pagemap": func() error {
			p, err := OpenPagemap(pid)
			if err == nil {
				p.Close()
			}
			return err
		},
		"Timers":    func() error { _, err := Timers(pid); return err },
		"Link":      func() error { _, err := Link(pid, "cwd"); return err },
		"StatFD":    func() error { _, err := StatFD(pid, 0); return err },
		"Namespace": func() error { _, err := Namespace(pid, "mnt"); return err },
		"OpenNamespace": func() error {
			f, err := OpenNamespace(pid, "mnt")
			if err == nil {
				f.Close()
			}
			return err
		},
	} {
		if err := call(); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("zombie: %s = %v, want an error wrapping fs.ErrNotExist", name, err)
		}
	}
	v.cmd.Wait()
	if _, err := Stat(pid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reaped: Stat = %v, want fs.ErrNotExist", err)
	}
	if _, err := State(pid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reaped: State = %v, want fs.ErrNotExist", err)
	}
}

// TestSelfName: errors about Self name /proc/self, not a number.
func TestSelfName(t *testing.T) {
	if _, err := StatFD(Self, 99999); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/proc/self/fd/99999") {
		t.Errorf("StatFD(Self, 99999) = %v", err)
	}
}

func TestBadPIDReaders(t *testing.T) {
	for _, pid := range []int{0, -1, Self + 1} {
		for name, call := range map[string]func() error{
			"Stat":          func() error { _, err := Stat(pid); return err },
			"Auxv":          func() error { _, err := Auxv(pid); return err },
			"Smaps":         func() error { _, err := Smaps(pid); return err },
			"PSS":           func() error { _, err := PSS(pid); return err },
			"Mounts":        func() error { _, err := Mounts(pid); return err },
			"Namespace":     func() error { _, err := Namespace(pid, "mnt"); return err },
			"NSLink":        func() error { _, err := NSLink(pid, "pid"); return err },
			"OpenNamespace": func() error { _, err := OpenNamespace(pid, "pid"); return err },
			"Link":          func() error { _, err := Link(pid, "cwd"); return err },
			"FDLinks":       func() error { _, err := FDLinks(pid); return err },
			"StatFD":        func() error { _, err := StatFD(pid, 0); return err },
			"OpenPagemap":   func() error { _, err := OpenPagemap(pid); return err },
			"Personality":   func() error { _, err := Personality(pid); return err },
			"Timers":        func() error { _, err := Timers(pid); return err },
		} {
			if err := call(); !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("%s(%d) = %v, want ErrInvalid", name, pid, err)
			}
		}
	}
}
