package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// StatInfo is /proc/PID/stat: the pid, the command name and the fields
// after it, kept as text and read by their proc(5) number.
type StatInfo struct {
	PID  int    // field 1
	Comm string // field 2, without its parentheses; may hold ')' and spaces
	// State is field 3: 'R', 'S', 'D', 'T', 't', 'Z' (zombie), 'X' (dead), ...
	State  byte
	fields []string // fields 3 and on
}

// Field returns field n (numbered as in proc(5): 1 pid, 2 comm, 3 state,
// 4 ppid, ..., 52 exit_code) as text, and whether the line has it.
func (s StatInfo) Field(n int) (string, bool) {
	switch {
	case n == 1:
		return strconv.Itoa(s.PID), true
	case n == 2:
		return s.Comm, true
	case n >= 3 && n-3 < len(s.fields):
		return s.fields[n-3], true
	}
	return "", false
}

// NumFields is the number of fields the line has (52 on Linux 3.5+).
func (s StatInfo) NumFields() int { return 2 + len(s.fields) }

// Int returns field n as a signed decimal; a field the line lacks or that
// is not a number is an error wrapping ErrFormat.
func (s StatInfo) Int(n int) (int64, error) {
	f, ok := s.Field(n)
	if !ok {
		return 0, fmt.Errorf("stat: no field %d: %w", n, ErrFormat)
	}
	v, err := strconv.ParseInt(f, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat field %d %q: %w", n, f, ErrFormat)
	}
	return v, nil
}

// Uint returns field n as an unsigned decimal, with Int's errors.
func (s StatInfo) Uint(n int) (uint64, error) {
	f, ok := s.Field(n)
	if !ok {
		return 0, fmt.Errorf("stat: no field %d: %w", n, ErrFormat)
	}
	v, err := strconv.ParseUint(f, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat field %d %q: %w", n, f, ErrFormat)
	}
	return v, nil
}

// PPID is field 4, the parent's pid (0 if the line lacks it).
func (s StatInfo) PPID() int {
	v, _ := s.Int(4)
	return int(v)
}

// Exited reports whether State is that of an exited process (a zombie,
// or dead).
func (s StatInfo) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// String formats s as the line of /proc/PID/stat it was parsed from
// (without the newline); ParseStat reads it back.
func (s StatInfo) String() string {
	return strconv.Itoa(s.PID) + " (" + s.Comm + ") " + strings.Join(s.fields, " ")
}

// ParseStat parses the text of /proc/PID/stat:
//
//	pid (comm) state ppid ...
//
// The comm is everything between the first "(" and the last ")". A line
// without that form, or whose state is not one letter, is an error
// wrapping ErrFormat.
func ParseStat(b []byte) (StatInfo, error) {
	s := strings.TrimSuffix(string(b), "\n")
	bad := func(why string) (StatInfo, error) {
		return StatInfo{}, fmt.Errorf("stat %q: %s: %w", s, why, ErrFormat)
	}
	pid, rest, ok := strings.Cut(s, " (")
	if !ok {
		return bad("no comm")
	}
	i := strings.LastIndexByte(rest, ')')
	if i < 0 {
		return bad("no comm")
	}
	var st StatInfo
	var err error
	if st.PID, err = strconv.Atoi(pid); err != nil || st.PID < 0 || strconv.Itoa(st.PID) != pid {
		return bad("bad pid")
	}
	st.Comm = rest[:i]
	after := rest[i+1:]
	if !strings.HasPrefix(after, " ") {
		return bad("no state")
	}
	st.fields = strings.Fields(after)
	if len(st.fields) == 0 || len(st.fields[0]) != 1 {
		return bad("bad state")
	}
	st.State = st.fields[0][0]
	if strings.Join(st.fields, " ") != after[1:] {
		return bad("fields not separated by single spaces")
	}
	return st, nil
}

// Stat reads /proc/PID/stat. Unlike the other functions it answers for a
// zombie too (State 'Z', its exit code in field 52): telling a zombie
// apart is what it is for. A reaped process is an error wrapping
// fs.ErrNotExist; see the package doc for the others.
func Stat(pid int) (StatInfo, error) {
	if err := checkPID(pid); err != nil {
		return StatInfo{}, err
	}
	b, err := readFile(pid, "stat")
	if errors.Is(err, fs.ErrNotExist) {
		return StatInfo{}, exited(pid)
	}
	if err != nil {
		return StatInfo{}, err
	}
	st, err := ParseStat(b)
	if err != nil {
		return StatInfo{}, fmt.Errorf("procfs: /proc/%v/stat: %w", procName(pid), err)
	}
	return st, nil
}

// State is the state letter of pid (Stat's State): a zombie is 'Z', not
// an error. It has Stat's errors.
func State(pid int) (byte, error) {
	st, err := Stat(pid)
	return st.State, err
}

// PIDs lists the processes /proc shows (its numeric entries: every
// thread group of /proc's PID namespace), in increasing order. Each may
// exit at any time after.
func PIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}
