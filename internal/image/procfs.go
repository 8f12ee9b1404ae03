package image

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// vma is one line of /proc/PID/maps.
type vma struct {
	Start, End uint64
	Perms      string // "rwxp"
	Offset     uint64
	Dev        string
	Inode      uint64
	Path       string
}

func (v vma) Len() uint64 { return v.End - v.Start }

func (v vma) prot() uint32 {
	var p uint32
	if v.Perms[0] == 'r' {
		p |= protRead
	}
	if v.Perms[1] == 'w' {
		p |= protWrite
	}
	if v.Perms[2] == 'x' {
		p |= protExec
	}
	return p
}

func (v vma) shared() bool { return v.Perms[3] == 's' }

const (
	protRead  = 0x1
	protWrite = 0x2
	protExec  = 0x4
)

func procPath(pid int, name string) string {
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

// readMaps parses /proc/PID/maps.
func readMaps(pid int) ([]vma, error) {
	b, err := os.ReadFile(procPath(pid, "maps"))
	if err != nil {
		return nil, err
	}
	var out []vma
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		// start-end perms offset dev inode [path]
		f := strings.Fields(line)
		if len(f) < 5 {
			return nil, fmt.Errorf("maps of %d: bad line %q", pid, line)
		}
		var v vma
		se := strings.SplitN(f[0], "-", 2)
		if len(se) != 2 {
			return nil, fmt.Errorf("maps of %d: bad range %q", pid, f[0])
		}
		if v.Start, err = strconv.ParseUint(se[0], 16, 64); err != nil {
			return nil, err
		}
		if v.End, err = strconv.ParseUint(se[1], 16, 64); err != nil {
			return nil, err
		}
		v.Perms = f[1]
		if len(v.Perms) != 4 {
			return nil, fmt.Errorf("maps of %d: bad perms %q", pid, f[1])
		}
		if v.Offset, err = strconv.ParseUint(f[2], 16, 64); err != nil {
			return nil, err
		}
		v.Dev = f[3]
		if v.Inode, err = strconv.ParseUint(f[4], 10, 64); err != nil {
			return nil, err
		}
		if len(f) > 5 {
			// The path is what follows the fifth field; it may hold spaces.
			rest := line
			for i := 0; i < 5; i++ {
				rest = strings.TrimLeft(rest, " ")
				if j := strings.IndexByte(rest, ' '); j >= 0 {
					rest = rest[j:]
				}
			}
			v.Path = strings.TrimLeft(rest, " ")
		}
		out = append(out, v)
	}
	return out, sc.Err()
}

// statusFields parses /proc/PID/status into key → value.
func statusFields(pid int) (map[string]string, error) {
	b, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, nil
}

// statFields returns the fields of /proc/PID/stat after the comm, so that
// index 0 is field 3 (state) of proc(5).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("stat of %d: no comm", pid)
	}
	return strings.Fields(s[i+1:]), nil
}

// statU64 returns field n (1-based, as in proc(5)) of fields from statFields.
func statU64(f []string, n int) (uint64, error) {
	if n-3 >= len(f) {
		return 0, fmt.Errorf("stat: no field %d", n)
	}
	return strconv.ParseUint(f[n-3], 10, 64)
}

// fdInfo is what /proc/PID/fdinfo/N says about one descriptor.
type fdInfo struct {
	Pos   int64
	Flags uint32 // octal in fdinfo; includes O_CLOEXEC
	Other map[string]string
}

func readFdInfo(pid, fd int) (fdInfo, error) {
	b, err := os.ReadFile(procPath(pid, "fdinfo/"+strconv.Itoa(fd)))
	if err != nil {
		return fdInfo{}, err
	}
	fi := fdInfo{Other: map[string]string{}}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "pos":
			fi.Pos, err = strconv.ParseInt(v, 10, 64)
		case "flags":
			var f uint64
			f, err = strconv.ParseUint(v, 8, 32)
			fi.Flags = uint32(f)
		default:
			fi.Other[k] = v
		}
		if err != nil {
			return fi, fmt.Errorf("fdinfo %d of %d: %q: %w", fd, pid, line, err)
		}
	}
	return fi, nil
}

// readAuxv returns /proc/PID/auxv as raw bytes (pairs of u64, AT_NULL
// terminated) and the value of AT_SYSINFO_EHDR (the vDSO base).
func readAuxv(pid int) ([]byte, uint64, error) {
	b, err := os.ReadFile(procPath(pid, "auxv"))
	if err != nil {
		return nil, 0, err
	}
	var vdso uint64
	for i := 0; i+16 <= len(b); i += 16 {
		k := binary.LittleEndian.Uint64(b[i:])
		if k == atSysinfoEhdr {
			vdso = binary.LittleEndian.Uint64(b[i+8:])
		}
		if k == 0 {
			return b[:i+16], vdso, nil
		}
	}
	return b, vdso, nil
}

const atSysinfoEhdr = 33

// rlimit resource names in /proc/PID/limits order = RLIMIT_* numbering.
const numRlimits = 16

// parseSigMask parses a 16-hex-digit mask from /proc/PID/status.
func parseSigMask(s string) (uint64, error) { return strconv.ParseUint(s, 16, 64) }

func parseOctal(s string) (uint64, error) { return strconv.ParseUint(strings.TrimSpace(s), 8, 32) }

func parseDec(s string) (uint64, error) { return strconv.ParseUint(strings.TrimSpace(s), 10, 32) }

// parseOctalDec parses the first field of a "Uid:"-style status line.
func parseOctalDec(s string) (uint64, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, fmt.Errorf("empty")
	}
	return parseDec(f[0])
}

func splitFields(s string) []string { return strings.Fields(s) }

// growsDown returns the start of each mapping of pid whose smaps VmFlags
// hold "gd" (VM_GROWSDOWN).
func growsDown(pid int) (map[uint64]bool, error) {
	b, err := os.ReadFile(procPath(pid, "smaps"))
	if err != nil {
		return nil, err
	}
	out := map[uint64]bool{}
	var start uint64
	for _, line := range strings.Split(string(b), "\n") {
		if flags, ok := strings.CutPrefix(line, "VmFlags:"); ok {
			for _, f := range strings.Fields(flags) {
				if f == "gd" {
					out[start] = true
				}
			}
			continue
		}
		// A mapping's first line: "start-end perms ...".
		if i := strings.IndexByte(line, '-'); i > 0 && !strings.Contains(line[:i], ":") {
			if v, err := strconv.ParseUint(line[:i], 16, 64); err == nil {
				start = v
			}
		}
	}
	return out, nil
}
