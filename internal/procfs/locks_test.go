package procfs

import (
	"errors"
	"testing"
)

func TestParseLock(t *testing.T) {
	for line, want := range map[string]Lock{
		"1: FLOCK  ADVISORY  WRITE 1234 fe:01:5678 0 EOF":  {"FLOCK", "ADVISORY", "WRITE", 1234, "fe:01", 5678, 0, -1},
		"2: OFDLCK ADVISORY  READ -1 00:2f:9 10 14":        {"OFDLCK", "ADVISORY", "READ", -1, "00:2f", 9, 10, 14},
		"1: LEASE  ACTIVE    READ 77 fe:00:10002495 0 EOF": {"LEASE", "ACTIVE", "READ", 77, "fe:00", 10002495, 0, -1},
		"3: -> POSIX  ADVISORY  WRITE 5 fe:01:1 200 EOF":   {"POSIX", "ADVISORY", "WRITE", 5, "fe:01", 1, 200, -1},
	} {
		got, err := ParseLock(line)
		if err != nil || got != want {
			t.Errorf("ParseLock(%q) = %+v, %v; want %+v", line, got, err, want)
		}
	}
	for _, line := range []string{"", "1: FLOCK", "1: FLOCK ADVISORY WRITE x fe:01:1 0 EOF", "1: POSIX ADVISORY READ 1 fe01 0 EOF",
		"1: POSIX ADVISORY READ 1 fe:01:1 9 3", "1: POSIX ADVISORY READ 1 fe:01:1 -1 EOF", "FLOCK ADVISORY WRITE 1 fe:01:1 0 EOF x"} {
		if _, err := ParseLock(line); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseLock(%q) = %v, want ErrFormat", line, err)
		}
	}
}

func FuzzParseLock(f *testing.F) {
	f.Add("1: FLOCK  ADVISORY  WRITE 1234 fe:01:5678 0 EOF")
	f.Add("3: -> POSIX  ADVISORY  WRITE 5 fe:01:1 200 300")
	f.Fuzz(func(t *testing.T, line string) {
		l, err := ParseLock(line)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if l.Start < 0 || (l.End != -1 && l.End < l.Start) {
			t.Fatalf("range %d-%d accepted", l.Start, l.End)
		}
	})
}
