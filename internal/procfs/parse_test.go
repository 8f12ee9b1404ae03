package procfs

import (
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// A real /proc/PID/maps of a Go binary with the objects SharedObjects
// looks for, and the padding the kernel writes.
const sampleMaps = `00400000-0053a000 r-xp 00000000 fd:01 1835028                            /usr/local/bin/victim
7f1200000000-7f1200001000 rw-s 00000000 00:01 2059                       /dev/zero (deleted)
7f1200001000-7f1200002000 rw-s 00000000 00:01 2060                       /memfd:procfs victim (deleted)
7f1200002000-7f1200003000 rw-s 00000000 00:01 32770                      /SYSV00000000 (deleted)
7f1200003000-7f1200004000 r--s 00000000 fd:01 77                         /usr/share/zoneinfo/UTC
7f1200004000-7f1200005000 rw-p 00000000 00:00 0 
7ffd4a1c0000-7ffd4a1e1000 rw-p 00000000 00:00 0                          [stack]
7ffd4a1f6000-7ffd4a1fa000 r--p 00000000 00:00 0                          [vvar]
7ffd4a1fa000-7ffd4a1fc000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`

func TestParseMapsSample(t *testing.T) {
	ms, err := ParseMaps([]byte(sampleMaps))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 10 {
		t.Fatalf("%d mappings, want 10", len(ms))
	}
	want := Mapping{Start: 0x7f1200001000, End: 0x7f1200002000, Perms: Perms{Read: true, Write: true, Shared: true},
		Dev: "00:01", Inode: 2060, Path: "/memfd:procfs victim (deleted)"}
	if ms[2] != want {
		t.Errorf("mapping 2 = %+v, want %+v", ms[2], want)
	}
	if ms[5].Path != "" || ms[5].Perms.String() != "rw-p" || ms[5].Len() != 0x1000 {
		t.Errorf("anonymous mapping = %+v", ms[5])
	}
	if ms[0].Perms != (Perms{Read: true, Exec: true}) || ms[0].Inode != 1835028 || ms[0].Dev != "fd:01" {
		t.Errorf("text mapping = %+v", ms[0])
	}
	for _, m := range ms {
		parseMapsBody(t, []byte(m.String()))
	}
}

func TestParseMapsBad(t *testing.T) {
	for _, line := range []string{
		"", // an empty line in the middle
		"00400000-0053a000 r-xp 00000000 fd:01",
		"00400000 r-xp 00000000 fd:01 1",
		"00400000-0053a00g r-xp 00000000 fd:01 1",
		"00500000-00400000 r-xp 00000000 fd:01 1",
		"00400000-0053a000 r-x 00000000 fd:01 1",
		"00400000-0053a000 rwxq 00000000 fd:01 1",
		"00400000-0053a000 xwrp 00000000 fd:01 1",
		"00400000-0053a000 r-xp 0x000000 fd:01 1",
		"00400000-0053a000 r-xp 00000000 fd01 1",
		"00400000-0053a000 r-xp 00000000 fd:01 -1",
		"00400000-0053a000 r-xp 00000000 fd:01 1a /x",
	} {
		in := "00400000-0053a000 r-xp 00000000 fd:01 1 /ok\n" + line + "\n"
		if _, err := ParseMaps([]byte(in)); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("ParseMaps(%q) = %v, want ErrFormat at line 2", line, err)
		}
		parseMapsBody(t, []byte(in))
	}
	if ms, err := ParseMaps(nil); err != nil || ms != nil {
		t.Errorf("ParseMaps(nil) = %v, %v", ms, err)
	}
}

// parseMapsBody is the fuzz body: ParseMaps never panics, and what it
// accepts formats back (Mapping.String) to text that parses the same.
func parseMapsBody(t *testing.T, b []byte) {
	ms, err := ParseMaps(b)
	if err != nil {
		if !errors.Is(err, ErrFormat) {
			t.Fatalf("ParseMaps error %v does not wrap ErrFormat", err)
		}
		return
	}
	var again []string
	for _, m := range ms {
		if m.End < m.Start {
			t.Fatalf("%+v: end before start", m)
		}
		sharedMapping(m) // must not panic either
		again = append(again, m.String())
	}
	ms2, err := ParseMaps([]byte(strings.Join(again, "\n")))
	if err != nil {
		t.Fatalf("reparse of %q: %v", again, err)
	}
	if len(ms2) != len(ms) {
		t.Fatalf("reparse: %d mappings, want %d", len(ms2), len(ms))
	}
	for i := range ms {
		if ms[i] != ms2[i] {
			t.Fatalf("reparse: %+v, want %+v", ms2[i], ms[i])
		}
	}
}

func FuzzParseMaps(f *testing.F) {
	f.Add([]byte(sampleMaps))
	f.Add([]byte("0-1000 rw-s 00000000 00:01 5 /a b  c  \n"))
	f.Add([]byte("0-0 ---p 0 0:0 0"))
	f.Fuzz(func(t *testing.T, b []byte) { parseMapsBody(t, b) })
}

func TestParseFDInfo(t *testing.T) {
	fi, err := ParseFDInfo([]byte("pos:\t12\nflags:\t02004002\nmnt_id:\t15\nino:\t1234\neventfd-count: 0\neventfd-id: 3\n" +
		"lock:\t1: FLOCK  ADVISORY  WRITE 77 00:2f:1234 0 EOF\nlock:\t2: POSIX  ADVISORY  READ 77 00:2f:1234 0 9\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := FDInfo{Pos: 12, Flags: 02004002, MntID: 15, Ino: 1234,
		Locks: []string{"1: FLOCK  ADVISORY  WRITE 77 00:2f:1234 0 EOF", "2: POSIX  ADVISORY  READ 77 00:2f:1234 0 9"}}
	if !reflect.DeepEqual(fi, want) {
		t.Errorf("ParseFDInfo = %+v, want %+v", fi, want)
	}
	// epoll's and inotify's extra lines hold colons of their own.
	epoll := "pos:\t0\nflags:\t02\nmnt_id:\t16\ntfd:        5 events:       19 data:                5  pos:0 ino:3 sdev:d\n"
	if fi, err := ParseFDInfo([]byte(epoll)); err != nil || fi.Flags != 02 || fi.MntID != 16 {
		t.Errorf("epoll fdinfo = %+v, %v", fi, err)
	}
	for _, bad := range []string{
		"", "pos:\t0\n", "flags:\t0\n", "pos:\tx\nflags:\t0\n", "pos:\t0\nflags:\t9\n",
		"pos:\t0\nflags:\t0\nflags:\t0\n", "pos:\t0\nflags:\t077777777777\n",
	} {
		if _, err := ParseFDInfo([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseFDInfo(%q) = %v, want ErrFormat", bad, err)
		}
		parseFDInfoBody(t, []byte(bad))
	}
}

// parseFDInfoBody is the fuzz body: ParseFDInfo never panics, fails only
// with ErrFormat, and what it accepts formats back to the same value.
func parseFDInfoBody(t *testing.T, b []byte) {
	fi, err := ParseFDInfo(b)
	if err != nil {
		if !errors.Is(err, ErrFormat) {
			t.Fatalf("ParseFDInfo error %v does not wrap ErrFormat", err)
		}
		return
	}
	s := []byte(strings.Join([]string{
		"pos:\t" + strconv.FormatInt(fi.Pos, 10), "flags:\t0" + strconv.FormatUint(uint64(fi.Flags), 8),
		"mnt_id:\t" + strconv.Itoa(fi.MntID), "ino:\t" + strconv.FormatUint(fi.Ino, 10), ""}, "\n"))
	fi2, err := ParseFDInfo(s)
	fi.Locks = nil // not written back
	if err != nil || !reflect.DeepEqual(fi2, fi) {
		t.Fatalf("reparse of %q = %+v, %v; want %+v", s, fi2, err, fi)
	}
}

func FuzzParseFDInfo(f *testing.F) {
	f.Add([]byte("pos:\t0\nflags:\t02\nmnt_id:\t16\nino:\t7\n"))
	f.Add([]byte("pos:\t0\nflags:\t02000000\nmnt_id:\t15\ninotify wd:1 ino:2 sdev:3 mask:fff ignored_mask:0\n"))
	f.Fuzz(func(t *testing.T, b []byte) { parseFDInfoBody(t, b) })
}

func TestParseStatus(t *testing.T) {
	m, err := parseStatus([]byte("Name:\tvictim\nState:\tS (sleeping)\nTgid:\t42\nUid:\t0\t0\t0\t0\n"))
	if err != nil || m["Name"] != "victim" || m["State"] != "S (sleeping)" || m["Uid"] != "0\t0\t0\t0" {
		t.Errorf("parseStatus = %q, %v", m, err)
	}
	for _, bad := range []string{"", "Name:\tx\n", "Name x\nState:\tR\n"} {
		if _, err := parseStatus([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("parseStatus(%q) = %v, want ErrFormat", bad, err)
		}
	}
}

func TestSharedMapping(t *testing.T) {
	rw, ro := Perms{Read: true, Write: true, Shared: true}, Perms{Read: true, Shared: true}
	for _, c := range []struct {
		m      Mapping
		shared bool
	}{
		{Mapping{Perms: rw, Path: "/dev/zero (deleted)"}, true},
		{Mapping{Perms: ro, Path: "/dev/zero (deleted)"}, true},
		{Mapping{Perms: rw, Path: "[anon_shmem:jit]"}, true},
		{Mapping{Perms: rw, Path: "/memfd:x (deleted)"}, true},
		{Mapping{Perms: ro, Path: "/memfd:x (deleted)"}, true},
		{Mapping{Perms: rw, Path: "/SYSV00000000 (deleted)"}, true},
		{Mapping{Perms: rw, Path: "/dev/shm/sem.x"}, true},
		{Mapping{Perms: ro, Path: "/dev/shm/x"}, true},
		{Mapping{Perms: rw, Path: "/var/lib/data"}, true},
		{Mapping{Perms: rw, Path: "/dev/dri/card0"}, true},
		{Mapping{Perms: rw, Path: ""}, true},
		{Mapping{Perms: ro, Path: "[something]"}, true},
		{Mapping{Perms: ro, Path: ""}, true},
		{Mapping{Perms: rw, Path: "anon_inode:[io_uring]"}, true},
		{Mapping{Perms: ro, Path: "anon_inode:[perf_event]"}, true},
		{Mapping{Perms: ro, Path: "/var/lib/catalyzer/rootfs/dev/shm/x (deleted)"}, true},
		{Mapping{Perms: rw, Path: "[vvar]"}, false},
		{Mapping{Perms: ro, Path: "[vdso]"}, false},
		{Mapping{Perms: ro, Path: "/usr/share/zoneinfo/UTC"}, false},
		{Mapping{Perms: Perms{Read: true, Write: true}, Path: "/memfd:x (deleted)"}, false},
		{Mapping{Perms: Perms{Read: true, Write: true}, Path: ""}, false},
	} {
		if got := sharedMapping(c.m) != ""; got != c.shared {
			t.Errorf("sharedMapping(%s %q) = %q, want shared=%v", c.m.Perms, c.m.Path, sharedMapping(c.m), c.shared)
		}
	}
}

func TestSharedFD(t *testing.T) {
	for link, shared := range map[string]bool{
		"/memfd:x (deleted)": true, "pipe:[12]": true, "socket:[13]": true,
		"anon_inode:[eventfd]": true, "anon_inode:[eventpoll]": true, "anon_inode:[timerfd]": true,
		"anon_inode:[signalfd]": true, "anon_inode:inotify": true, "anon_inode:[io_uring]": true,
		"anon_inode:[userfaultfd]": true, "anon_inode:bpf-map": true, "anon_inode:[pidfd]": false,
		"net:[4026531840]": false, "mnt:[4026531841]": false, "/etc/hosts": false, "/dev/null": false,
		"weird:[1]": true, "": true,
	} {
		if got := sharedFD(link) != ""; got != shared {
			t.Errorf("sharedFD(%q) = %q, want shared=%v", link, sharedFD(link), shared)
		}
	}
}

// TestParseThread: a thread's own status lines become its ThreadInfo; a
// status without a capability line is refused.
func TestParseThread(t *testing.T) {
	status := "Name:\tworker\nState:\tS (sleeping)\nNSpid:\t4242\t3\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n" +
		"SigPnd:\t0000000000000200\nShdPnd:\t0000000000000001\nSigBlk:\t0000000000000201\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001fffffffffe\n" +
		"CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nSeccomp:\t2\n"
	ti, err := parseThread([]byte(status), []byte("worker\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := ThreadInfo{Comm: "worker", NSTID: 3, CapPrm: 0x1ffffffffff, CapEff: 0x1fffffffffe, CapBnd: 0x1ffffffffff,
		Seccomp: 2, SigPnd: 0x200, ShdPnd: 1, SigBlk: 0x201, Uid: "0\t0\t0\t0", Gid: "0\t0\t0\t0"}
	if ti != want {
		t.Fatalf("got %+v\nwant %+v", ti, want)
	}
	if _, err := parseThread([]byte(strings.Replace(status, "CapAmb", "Capamb", 1)), nil); !errors.Is(err, ErrFormat) {
		t.Fatalf("status without CapAmb: %v, want ErrFormat", err)
	}
}

// A real /proc/PID/limits, with the units the last two lines lack and the
// trailing padding the kernel writes.
const sampleLimits = `Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max file size             unlimited            unlimited            bytes     
Max data size             unlimited            unlimited            bytes     
Max stack size            8388608              unlimited            bytes     
Max core file size        0                    unlimited            bytes     
Max resident set          unlimited            unlimited            bytes     
Max processes             96363                96363                processes 
Max open files            20000                20000                files     
Max locked memory         8388608              8388608              bytes     
Max address space         unlimited            unlimited            bytes     
Max file locks            unlimited            unlimited            locks     
Max pending signals       96363                96363                signals   
Max msgqueue size         819200               819200               bytes     
Max nice priority         0                    0                    
Max realtime priority     0                    0                    
Max realtime timeout      unlimited            unlimited            us        
`

func TestParseLimits(t *testing.T) {
	ls, err := ParseLimits([]byte(sampleLimits))
	if err != nil {
		t.Fatal(err)
	}
	const inf = math.MaxUint64
	want := map[int]Rlimit{0: {inf, inf}, 3: {8388608, inf}, 4: {0, inf}, 7: {20000, 20000}, 13: {0, 0}, 15: {inf, inf}}
	if len(ls) != 16 {
		t.Fatalf("%d limits, want 16", len(ls))
	}
	for r, w := range want {
		if ls[r] != w {
			t.Errorf("limit %d = %+v, want %+v", r, ls[r], w)
		}
	}
	for _, bad := range []string{"", "Max cpu time 1 2\n", "Limit x\nMax cpu time 1\n", "Limit x\nMax cpu time lots 2 seconds\n"} {
		if _, err := ParseLimits([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseLimits(%q) = %v, want ErrFormat", bad, err)
		}
	}
}
