package boot

import (
	"errors"
	"maps"
	"testing"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// checkReconnect is the body of the fixed-input tests and the fuzz
// target: a parse either fails with ErrInvalid, or gives a map that
// encodes to bytes that parse back to it.
func checkReconnect(t *testing.T, b []byte) (map[int]int, error) {
	m, err := parseReconnect(b)
	if err != nil {
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Fatalf("parse %q: %v, want ErrInvalid", b, err)
		}
		return nil, err
	}
	back, err := parseReconnect(encodeReconnect(m))
	if err != nil || !maps.Equal(back, m) {
		t.Fatalf("round trip of %q: %v %v", b, back, err)
	}
	return m, nil
}

func TestParseReconnect(t *testing.T) {
	good := map[string]map[int]int{
		"3 3\n1 4\n2 5\n": {3: rsControl, 1: rsStdout, 2: rsStderr},
		"3 3":             {3: rsControl},
		"10 4\n":          {10: rsStdout},
	}
	for in, want := range good {
		m, err := checkReconnect(t, []byte(in))
		if err != nil || !maps.Equal(m, want) {
			t.Errorf("%q: %v %v, want %v", in, m, err, want)
		}
	}
	for _, in := range []string{"", "\n", "3", "3 3 3", "x 3", "3 6", "3 2", "-1 3", "3 3\n3 4", "1048576 3", "3 3\n\n"} {
		if m, err := checkReconnect(t, []byte(in)); err == nil {
			t.Errorf("%q accepted: %v", in, m)
		}
	}
}

func FuzzParseReconnect(f *testing.F) {
	for _, s := range []string{"3 3\n1 4\n2 5\n", "3 3", "", "3 3\n3 4", "99999999999999999999 3"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkReconnect(t, b) })
}
