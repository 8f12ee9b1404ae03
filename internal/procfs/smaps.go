package procfs

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// SmapsEntry is one mapping of /proc/PID/smaps (or the one line of
// smaps_rollup): its maps line, its counters and its VmFlags.
type SmapsEntry struct {
	Mapping
	// Fields are the counters by name, in kB where smaps gives a unit:
	// "Rss", "Pss", "Swap", ..., "THPeligible".
	Fields map[string]uint64
	// VMFlags are the two-letter flags of the "VmFlags:" line: "rd",
	// "wr", "gd" (VM_GROWSDOWN, a stack), ... (nil without the line).
	VMFlags []string
}

// HasFlag reports whether VMFlags holds flag.
func (e SmapsEntry) HasFlag(flag string) bool { return slices.Contains(e.VMFlags, flag) }

// Smaps reads /proc/PID/smaps. See the package doc for its errors.
func Smaps(pid int) ([]SmapsEntry, error) {
	return readSmaps(pid, "smaps")
}

// SmapsRollup reads /proc/PID/smaps_rollup (Linux 4.14+): the counters of
// every mapping summed, under one "[rollup]" line. See the package doc for
// its errors.
func SmapsRollup(pid int) (SmapsEntry, error) {
	es, err := readSmaps(pid, "smaps_rollup")
	if err != nil {
		return SmapsEntry{}, err
	}
	if len(es) != 1 {
		return SmapsEntry{}, fmt.Errorf("procfs: /proc/%v/smaps_rollup: %d entries, want 1: %w", procName(pid), len(es), ErrFormat)
	}
	return es[0], nil
}

// PSS is the proportional set size of pid in KiB: the "Pss" of
// smaps_rollup. It has SmapsRollup's errors; a rollup without Pss is an
// error wrapping ErrFormat.
func PSS(pid int) (int64, error) {
	r, err := SmapsRollup(pid)
	if err != nil {
		return 0, err
	}
	kb, ok := r.Fields["Pss"]
	if !ok {
		return 0, fmt.Errorf("procfs: /proc/%v/smaps_rollup without Pss: %w", procName(pid), ErrFormat)
	}
	return int64(kb), nil
}

func readSmaps(pid int, name string) ([]SmapsEntry, error) {
	return readLive(pid, name, ParseSmaps)
}

// ParseSmaps parses the text of /proc/PID/smaps or smaps_rollup: for each
// mapping its maps line (as ParseMaps reads it), then lines of
//
//	Name:   N kB
//	Name:   N
//	VmFlags: rd wr mr mw me gd ac
//
// A line of neither form, a counter before the first mapping, or one
// given twice for a mapping is an error wrapping ErrFormat.
func ParseSmaps(b []byte) ([]SmapsEntry, error) {
	var out []SmapsEntry
	for n, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if n == 0 && line == "" {
			break // no mappings at all
		}
		bad := func(why string) ([]SmapsEntry, error) {
			return nil, fmt.Errorf("line %d %q: %s: %w", n+1, line, why, ErrFormat)
		}
		tok, rest := field(line)
		key, isField := strings.CutSuffix(tok, ":")
		if !isField {
			m, err := parseMapping(line)
			if err != nil {
				return bad(err.Error())
			}
			out = append(out, SmapsEntry{Mapping: m, Fields: map[string]uint64{}})
			continue
		}
		if len(out) == 0 {
			return bad("a field before the first mapping")
		}
		e := &out[len(out)-1]
		if key == "VmFlags" {
			if e.VMFlags != nil {
				return bad("VmFlags twice")
			}
			e.VMFlags = append([]string{}, strings.Fields(rest)...)
			continue
		}
		if _, dup := e.Fields[key]; dup || key == "" {
			return bad("field twice, or no name")
		}
		f := strings.Fields(rest)
		if len(f) == 0 || len(f) > 2 || len(f) == 2 && f[1] != "kB" {
			return bad("not N or N kB")
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return bad("not a number")
		}
		e.Fields[key] = v
	}
	return out, nil
}
