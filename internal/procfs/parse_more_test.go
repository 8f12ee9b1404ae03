package procfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
)

const sampleStat = "4242 (a) b (c)) Z 1 4242 4242 0 -1 4194560 91 0 0 0 0 0 0 0 20 0 1 0 123 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 9\n"

func TestParseStat(t *testing.T) {
	st, err := ParseStat([]byte(sampleStat))
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != 4242 || st.Comm != "a) b (c)" || st.State != 'Z' || !st.Exited() || st.PPID() != 1 || st.NumFields() != 52 {
		t.Errorf("ParseStat = %+v", st)
	}
	if v, err := st.Int(52); err != nil || v != 9 {
		t.Errorf("exit_code = %d, %v", v, err)
	}
	if v, err := st.Int(7); err != nil || v != 0 {
		t.Errorf("tty_nr = %d, %v", v, err)
	}
	if v, err := st.Int(8); err != nil || v != -1 {
		t.Errorf("tpgid = %d, %v", v, err)
	}
	if v, err := st.Uint(25); err != nil || v != 18446744073709551615 {
		t.Errorf("rsslim = %d, %v", v, err)
	}
	if _, err := st.Int(53); !errors.Is(err, ErrFormat) {
		t.Errorf("field 53 = %v, want ErrFormat", err)
	}
	if _, err := st.Uint(8); !errors.Is(err, ErrFormat) {
		t.Errorf("Uint of -1 = %v, want ErrFormat", err)
	}
	if f, ok := st.Field(2); !ok || f != st.Comm {
		t.Errorf("Field(2) = %q", f)
	}
	if _, ok := st.Field(0); ok {
		t.Error("Field(0) exists")
	}
	for _, bad := range []string{"", "1", "1 (x)", "1 (x) ", "1 (x) RS 0", "x (y) R", "1 (x R 0", "-1 (x) R", "01 (x) R", "1 (x)R", "1 (x) R  0"} {
		if _, err := ParseStat([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseStat(%q) = %v, want ErrFormat", bad, err)
		}
		parseStatBody(t, []byte(bad))
	}
	parseStatBody(t, []byte(sampleStat))
}

// parseStatBody is the fuzz body: ParseStat never panics, fails only with
// ErrFormat, and what it accepts formats back (String) to the same value.
func parseStatBody(t *testing.T, b []byte) {
	st, err := ParseStat(b)
	if err != nil {
		if !errors.Is(err, ErrFormat) {
			t.Fatalf("ParseStat error %v does not wrap ErrFormat", err)
		}
		return
	}
	for n := range st.NumFields() + 2 {
		st.Field(n)
		st.Int(n)
		st.Uint(n)
	}
	st2, err := ParseStat([]byte(st.String()))
	if err != nil || st2.PID != st.PID || st2.Comm != st.Comm || st2.State != st.State || !slices.Equal(st2.fields, st.fields) {
		t.Fatalf("reparse of %q = %+v, %v; want %+v", st.String(), st2, err, st)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte(sampleStat))
	f.Add([]byte("1 (systemd) S 0 1 1 0 -1 4194560\n"))
	f.Fuzz(func(t *testing.T, b []byte) { parseStatBody(t, b) })
}

func auxvBytes(pairs ...uint64) []byte {
	b := make([]byte, 8*len(pairs))
	for i, v := range pairs {
		binary.NativeEndian.PutUint64(b[8*i:], v)
	}
	return b
}

func TestParseAuxv(t *testing.T) {
	raw := append(auxvBytes(6, 4096, AtSysinfoEhdr, 0x7ffd0000, 0, 0), 1, 2, 3) // trailing bytes past AT_NULL
	v, err := ParseAuxv(raw)
	if err != nil || len(v) != 48 {
		t.Fatalf("ParseAuxv = %d bytes, %v", len(v), err)
	}
	if x, ok := AuxvValue(v, AtSysinfoEhdr); !ok || x != 0x7ffd0000 {
		t.Errorf("AT_SYSINFO_EHDR = %#x, %v", x, ok)
	}
	if _, ok := AuxvValue(v, 25); ok {
		t.Error("AT_RANDOM found in a vector without it")
	}
	for _, bad := range [][]byte{nil, auxvBytes(6, 4096), auxvBytes(6, 4096)[:15], append(auxvBytes(6), 0, 0, 0, 0, 0, 0, 0, 0)[:12]} {
		if _, err := ParseAuxv(bad); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseAuxv(%x) = %v, want ErrFormat", bad, err)
		}
		parseAuxvBody(t, bad)
	}
	parseAuxvBody(t, raw)
}

// parseAuxvBody is the fuzz body: ParseAuxv never panics, fails only with
// ErrFormat, and what it returns is whole pairs ending at the one AT_NULL.
func parseAuxvBody(t *testing.T, b []byte) {
	v, err := ParseAuxv(b)
	if err != nil {
		if !errors.Is(err, ErrFormat) {
			t.Fatalf("ParseAuxv error %v does not wrap ErrFormat", err)
		}
		return
	}
	if len(v)%16 != 0 || len(v) == 0 || binary.NativeEndian.Uint64(v[len(v)-16:]) != 0 {
		t.Fatalf("ParseAuxv = %x: not pairs ending with AT_NULL", v)
	}
	for i := 0; i+16 < len(v); i += 16 {
		k := binary.NativeEndian.Uint64(v[i:])
		if k == 0 {
			t.Fatalf("ParseAuxv = %x: an AT_NULL before the end", v)
		}
		if x, ok := AuxvValue(v, k); !ok || (x != binary.NativeEndian.Uint64(v[i+8:]) && !slices.Contains(auxvKeysBefore(v, i), k)) {
			t.Fatalf("AuxvValue(%d) = %#x, %v", k, x, ok)
		}
	}
}

func auxvKeysBefore(v []byte, end int) []uint64 {
	var ks []uint64
	for i := 0; i < end; i += 16 {
		ks = append(ks, binary.NativeEndian.Uint64(v[i:]))
	}
	return ks
}

func FuzzParseAuxv(f *testing.F) {
	f.Add(auxvBytes(6, 4096, AtSysinfoEhdr, 0x7ffd0000, 0, 0))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) { parseAuxvBody(t, b) })
}

func TestParsePagemap(t *testing.T) {
	es, err := ParsePagemap(auxvBytes(1<<63|1<<56|42, 1<<62, 1<<63|1<<61, 1<<55))
	if err != nil || len(es) != 4 {
		t.Fatalf("ParsePagemap = %v, %v", es, err)
	}
	if !es[0].Present() || !es[0].Exclusive() || es[0].PFN() != 42 || es[0].Swapped() || es[0].FileOrShared() {
		t.Errorf("entry 0 = %#x", es[0])
	}
	if !es[1].Swapped() || es[1].Present() || !es[2].FileOrShared() || !es[3].SoftDirty() || es[3].PFN() != 0 {
		t.Errorf("entries = %#x", es)
	}
	for _, bad := range [][]byte{{1}, make([]byte, 9)} {
		if _, err := ParsePagemap(bad); !errors.Is(err, ErrFormat) {
			t.Errorf("ParsePagemap(%d bytes) = %v, want ErrFormat", len(bad), err)
		}
		parsePagemapBody(t, bad)
	}
}

// parsePagemapBody is the fuzz body: ParsePagemap never panics, fails
// only with ErrFormat, and gives one entry per 8 bytes, bit for bit.
func parsePagemapBody(t *testing.T, b []byte) {
	es, err := ParsePagemap(b)
	if err != nil {
		if !errors.Is(err, ErrFormat) || len(b)%8 == 0 {
			t.Fatalf("ParsePagemap(%d bytes) error %v", len(b), err)
		}
		return
	}
	if len(es) != len(b)/8 {
		t.Fatalf("%d entries from %d bytes", len(es), len(b))
	}
	for i, e := range es {
		if uint64(e) != binary.NativeEndian.Uint64(b[8*i:]) || e.PFN() > 1<<55 {
			t.Fatalf("entry %d = %#x", i, e)
		}
	}
}

func FuzzParsePagemap(f *testing.F) {
	f.Add(auxvBytes(1<<63|42, 1<<62))
	f.Fuzz(func(t *testing.T, b []byte) { parsePagemapBody(t, b) })
}

const sampleSmaps = `55d1c0a00000-55d1c0a21000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
KernelPageSize:        4 kB
Rss:                   8 kB
Pss:                   6 kB
THPeligible:    0
VmFlags: rd wr mr mw me ac sd
7ffd4a1c0000-7ffd4a1e1000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
Rss:                  16 kB
Pss:                  16 kB
VmFlags: rd wr mr mw me gd ac
`

const sampleRollup = `55d1c0800000-7ffd4a1fc000 ---p 00000000 00:00 0                          [rollup]
Rss:                1640 kB
Pss:                 385 kB
Pss_Anon:            116 kB
`

func TestParseSmaps(t *testing.T) {
	es, err := ParseSmaps([]byte(sampleSmaps))
	if err != nil || len(es) != 2 {
		t.Fatalf("ParseSmaps = %+v, %v", es, err)
	}
	if es[0].Path != "[heap]" || es[0].Fields["Pss"] != 6 || es[0].Fields["THPeligible"] != 0 || es[0].HasFlag("gd") {
		t.Errorf("heap = %+v", es[0])
	}
	if es[1].Path != "[stack]" || es[1].Start != 0x7ffd4a1c0000 || !es[1].HasFlag("gd") || es[1].Fields["Rss"] != 16 {
		t.Errorf("stack = %+v", es[1])
	}
	r, err := ParseSmaps([]byte(sampleRollup))
	if err != nil || len(r) != 1 || r[0].Path != "[rollup]" || r[0].Fields["Pss"] != 385 || r[0].VMFlags != nil {
		t.Errorf("rollup = %+v, %v", r, err)
	}
	if es, err := ParseSmaps(nil); err != nil || es != nil {
		t.Errorf("ParseSmaps(nil) = %v, %v", es, err)
	}
	for _, bad := range []string{
		"Rss: 4 kB\n",
		"0-1000 rw-p 00000000 00:00 0\nRss: 4 kB\nRss: 4 kB\n",
		"0-1000 rw-p 00000000 00:00 0\nRss: x kB\n",
		"0-1000 rw-p 00000000 00:00 0\nRss: 4 MB\n",
		"0-1000 rw-p 00000000 00:00 0\nRss:\n",
		"0-1000 rw-p 00000000 00:00 0\nVmFlags: rd\nVmFlags: wr\n",
		"0-1000 rw-p 00000000 00:00\n",
		"0-1000 rw-p 00000000 00:00 0\n\n",
	} {
		if _, err := ParseSmaps([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseSmaps(%q) = %v, want ErrFormat", bad, err)
		}
		parseSmapsBody(t, []byte(bad))
	}
	parseSmapsBody(t, []byte(sampleSmaps))
}

// parseSmapsBody is the fuzz body: ParseSmaps never panics, fails only
// with ErrFormat, and what it accepts formats back to text that parses
// the same.
func parseSmapsBody(t *testing.T, b []byte) {
	es, err := ParseSmaps(b)
	if err != nil {
		if !errors.Is(err, ErrFormat) {
			t.Fatalf("ParseSmaps error %v does not wrap ErrFormat", err)
		}
		return
	}
	var s strings.Builder
	for _, e := range es {
		fmt.Fprintln(&s, e.Mapping.String())
		var keys []string
		for k := range e.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&s, "%s: %d kB\n", k, e.Fields[k])
		}
		if e.VMFlags != nil {
			fmt.Fprintf(&s, "VmFlags: %s\n", strings.Join(e.VMFlags, " "))
		}
	}
	es2, err := ParseSmaps([]byte(s.String()))
	if err != nil || len(es2) != len(es) {
		t.Fatalf("reparse of %q = %+v, %v; want %+v", s.String(), es2, err, es)
	}
	for i := range es {
		if es2[i].Mapping != es[i].Mapping || !fieldsEqual(es2[i].Fields, es[i].Fields) ||
			!slices.Equal(es2[i].VMFlags, es[i].VMFlags) || (es2[i].VMFlags == nil) != (es[i].VMFlags == nil) {
			t.Fatalf("reparse: %+v, want %+v", es2[i], es[i])
		}
	}
}

func FuzzParseSmaps(f *testing.F) {
	f.Add([]byte(sampleSmaps))
	f.Add([]byte(sampleRollup))
	f.Fuzz(func(t *testing.T, b []byte) { parseSmapsBody(t, b) })
}

const sampleMountInfo = `22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
25 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
97 22 0:45 / /run/catalyzer/sandbox/t/a\040b rw,relatime - tmpfs tmpfs rw,size=1024k
98 97 0:46 /x\134y /run/catalyzer/sandbox/t/a\040b/sub rw master:3 propagate_from:2 - fuse.x a\011src rw
`

func TestParseMountInfo(t *testing.T) {
	ms, err := ParseMountInfo([]byte(sampleMountInfo))
	if err != nil || len(ms) != 4 {
		t.Fatalf("ParseMountInfo = %+v, %v", ms, err)
	}
	want := Mount{ID: 98, Parent: 97, Dev: "0:46", Root: `/x\y`, MountPoint: "/run/catalyzer/sandbox/t/a b/sub",
		Options: "rw", Optional: []string{"master:3", "propagate_from:2"}, FSType: "fuse.x", Source: "a\tsrc", SuperOptions: "rw"}
	if got := ms[3]; got.String() != want.String() || !slices.Equal(got.Optional, want.Optional) || got.MountPoint != want.MountPoint {
		t.Errorf("mount 3 = %+v, want %+v", got, want)
	}
	if ms, err := ParseMountInfo([]byte("30 22 0:50 / /x rw - tmpfs  rw\n")); err != nil || ms[0].Source != "" || ms[0].SuperOptions != "rw" {
		t.Errorf("an empty source: %+v, %v", ms, err)
	}
	if ms[0].MountPoint != "/" || ms[0].Optional[0] != "shared:1" || ms[2].Optional != nil || ms[2].Source != "tmpfs" {
		t.Errorf("mounts = %+v", ms)
	}
	var under []string
	for _, m := range ms {
		if m.Under("/run/catalyzer/sandbox/t") {
			under = append(under, m.MountPoint)
		}
	}
	if len(under) != 2 || !ms[0].Under("/") || ms[1].Under("/pro") || !ms[1].Under("/proc/") {
		t.Errorf("Under: %q", under)
	}
	if unescapeMount(`a\40b\400\`) != `a\40b\400\` || unescapeMount(`\101\0`) != `A\0` {
		t.Errorf("unescapeMount of bad escapes = %q, %q", unescapeMount(`a\40b\400\`), unescapeMount(`\101\0`))
	}
	for _, bad := range []string{
		"", "22 1 252:1 / / rw - ext4 /dev/vda1",
		"22 1 252:1 / / rw ext4 /dev/vda1 rw",
		"22 1 252:1 / / rw - ext4 /dev/vda1 rw extra",
		"x 1 252:1 / / rw - ext4 /dev/vda1 rw",
		"22 -1 252:1 / / rw - ext4 /dev/vda1 rw",
		"22 1 252-1 / / rw - ext4 /dev/vda1 rw",
		"22 1 252:x / / rw - ext4 /dev/vda1 rw",
		"22 1 252:1 /  / rw - ext4 /dev/vda1 rw",
		"22 1 252:1 / / rw - ext4 /dev/vda1 ",
	} {
		in := "22 1 252:1 / / rw - ext4 /dev/vda1 rw\n" + bad + "\n"
		if _, err := ParseMountInfo([]byte(in)); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("ParseMountInfo(%q) = %v, want ErrFormat at line 2", bad, err)
		}
		parseMountInfoBody(t, []byte(in))
	}
	parseMountInfoBody(t, []byte(sampleMountInfo))
}

// parseMountInfoBody is the fuzz body: ParseMountInfo never panics, fails
// only with ErrFormat, and what it accepts formats back (Mount.String,
// escaping included) to text that parses the same.
func parseMountInfoBody(t *testing.T, b []byte) {
	ms, err := ParseMountInfo(b)
	if err != nil {
		if !errors.Is(err, ErrFormat) {
			t.Fatalf("ParseMountInfo error %v does not wrap ErrFormat", err)
		}
		return
	}
	var again []string
	for _, m := range ms {
		m.Under(m.MountPoint)
		again = append(again, m.String())
	}
	ms2, err := ParseMountInfo([]byte(strings.Join(again, "\n")))
	if err != nil || len(ms2) != len(ms) {
		t.Fatalf("reparse of %q = %+v, %v", again, ms2, err)
	}
	for i := range ms {
		a, b := ms[i], ms2[i]
		if !slices.Equal(a.Optional, b.Optional) {
			t.Fatalf("reparse: %+v, want %+v", b, a)
		}
		if a.String() != b.String() || a.Root != b.Root || a.MountPoint != b.MountPoint || a.FSType != b.FSType || a.Source != b.Source {
			t.Fatalf("reparse: %+v, want %+v", b, a)
		}
	}
}

func FuzzParseMountInfo(f *testing.F) {
	f.Add([]byte(sampleMountInfo))
	f.Add([]byte("1 0 0:1 / / rw - rootfs rootfs rw\n"))
	f.Fuzz(func(t *testing.T, b []byte) { parseMountInfoBody(t, b) })
}

func fieldsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestStatusUints(t *testing.T) {
	s := StatusInfo{"Uid": "1000\t1000\t1000\t1000", "Umask": "0022", "SigPnd": "0000000000000100", "Groups": "", "Bad": "12 x"}
	if v, err := s.Uint("Uid", 10); err != nil || v != 1000 {
		t.Errorf("Uid = %d, %v", v, err)
	}
	if v, err := s.Uint("Umask", 8); err != nil || v != 0o22 {
		t.Errorf("Umask = %#o, %v", v, err)
	}
	if v, err := s.Uint("SigPnd", 16); err != nil || v != 0x100 {
		t.Errorf("SigPnd = %#x, %v", v, err)
	}
	if v, err := s.Uints("Groups", 10); err != nil || v != nil {
		t.Errorf("Groups = %v, %v", v, err)
	}
	for _, k := range []string{"Bad", "Groups", "Missing"} {
		if _, err := s.Uint(k, 10); !errors.Is(err, ErrFormat) {
			t.Errorf("Uint(%s) = %v, want ErrFormat", k, err)
		}
	}
}

// TestMountPointsUnder: this process's /proc is listed under /proc and
// under /, and not under a sibling that shares its prefix.
func TestMountPointsUnder(t *testing.T) {
	has := func(dir string) bool {
		t.Helper()
		ps, err := MountPointsUnder(Self, dir)
		if err != nil {
			t.Fatal(err)
		}
		return slices.Contains(ps, "/proc")
	}
	if !has("/proc") || !has("/") || has("/pro") {
		t.Errorf("/proc under /proc %v, / %v, /pro %v", has("/proc"), has("/"), has("/pro"))
	}
}
