package procfs

import (
	"fmt"
	"strconv"
	"strings"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64 // [Start, End)
	Perms      Perms
	Offset     uint64 // in the file, bytes
	Dev        string // "major:minor" in hex, as maps shows it ("fd:01")
	Inode      uint64
	// Path as maps shows it: a file ("/usr/lib/libc.so.6", with
	// " (deleted)" appended once unlinked), a special mapping ("[heap]",
	// "[vdso]", "[anon:NAME]"), or "" for anonymous memory. The kernel
	// writes a newline in a name as `\012`.
	Path string
}

// Len is the size of the mapping in bytes.
func (m Mapping) Len() uint64 { return m.End - m.Start }

// String formats m as a line of /proc/PID/maps (without the padding
// before the path); ParseMaps reads it back.
func (m Mapping) String() string {
	s := fmt.Sprintf("%x-%x %s %08x %s %d", m.Start, m.End, m.Perms, m.Offset, m.Dev, m.Inode)
	if m.Path != "" {
		s += " " + m.Path
	}
	return s
}

// Perms is the protection and sharing of a mapping: maps' "rwxs" column.
type Perms struct {
	Read, Write, Exec bool
	Shared            bool // MAP_SHARED ('s'); false is MAP_PRIVATE ('p')
}

// String formats p as maps does: "r-xp", "rw-s".
func (p Perms) String() string {
	b := []byte("---p")
	if p.Read {
		b[0] = 'r'
	}
	if p.Write {
		b[1] = 'w'
	}
	if p.Exec {
		b[2] = 'x'
	}
	if p.Shared {
		b[3] = 's'
	}
	return string(b)
}

func parsePerms(s string) (Perms, bool) {
	if len(s) != 4 {
		return Perms{}, false
	}
	var p Perms
	flag := func(c, set byte, v *bool) bool {
		switch c {
		case set:
			*v = true
			return true
		case '-':
			return true
		}
		return false
	}
	ok := flag(s[0], 'r', &p.Read) && flag(s[1], 'w', &p.Write) && flag(s[2], 'x', &p.Exec)
	switch s[3] {
	case 's':
		p.Shared = true
	case 'p':
	default:
		ok = false
	}
	return p, ok
}

// Maps reads /proc/PID/maps. See the package doc for its errors.
func Maps(pid int) ([]Mapping, error) {
	if err := checkPID(pid); err != nil {
		return nil, err
	}
	ms, err := maps(pid)
	if err != nil {
		return nil, err
	}
	return ms, alive(pid)
}

func maps(pid int) ([]Mapping, error) {
	b, err := readFile(pid, "maps")
	if err != nil {
		return nil, err
	}
	ms, err := ParseMaps(b)
	if err != nil {
		return nil, fmt.Errorf("procfs: /proc/%v/maps: %w", procName(pid), err)
	}
	return ms, nil
}

// ParseMaps parses the text of /proc/PID/maps, one Mapping a line:
//
//	start-end perms offset dev inode [path]
//
// A line that does not have that form is an error wrapping ErrFormat.
func ParseMaps(b []byte) ([]Mapping, error) {
	return parseLines(b, parseMapping)
}

// field splits the first space-separated field off s.
func field(s string) (tok, rest string) {
	s = strings.TrimLeft(s, " ")
	if i := strings.IndexByte(s, ' '); i >= 0 {
		return s[:i], s[i:]
	}
	return s, ""
}

type parseError string

func (e parseError) Error() string { return string(e) }

func parseMapping(line string) (Mapping, error) {
	var m Mapping
	var f [5]string
	rest := line
	for i := range f {
		f[i], rest = field(rest)
		if f[i] == "" {
			return m, parseError("fewer than 5 fields")
		}
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return m, parseError("bad range")
	}
	var err error
	if m.Start, err = strconv.ParseUint(lo, 16, 64); err != nil {
		return m, parseError("bad start")
	}
	if m.End, err = strconv.ParseUint(hi, 16, 64); err != nil {
		return m, parseError("bad end")
	}
	if m.End < m.Start {
		return m, parseError("end before start")
	}
	if m.Perms, ok = parsePerms(f[1]); !ok {
		return m, parseError("bad perms")
	}
	if m.Offset, err = strconv.ParseUint(f[2], 16, 64); err != nil {
		return m, parseError("bad offset")
	}
	if !validDev(f[3]) {
		return m, parseError("bad dev")
	}
	m.Dev = f[3]
	if m.Inode, err = strconv.ParseUint(f[4], 10, 64); err != nil {
		return m, parseError("bad inode")
	}
	// The path is all that follows the padding; it may hold spaces.
	m.Path = strings.TrimLeft(rest, " ")
	return m, nil
}

// validDev reports whether s is "major:minor" in hex.
func validDev(s string) bool {
	maj, min, ok := strings.Cut(s, ":")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(maj, 16, 32)
	_, err2 := strconv.ParseUint(min, 16, 32)
	return err1 == nil && err2 == nil
}
