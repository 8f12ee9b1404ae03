package sandbox

import (
	"errors"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// checkReports is the body of the fixed-input tests and the fuzz target:
// a stream gives marks, or an *InitError, or ErrInvalid, or a read error;
// never more marks than maxReports.
func checkReports(t *testing.T, in string) ([]mark, bool, error) {
	marks, ready, err := readReports(strings.NewReader(in))
	var ie *InitError
	switch {
	case err == nil:
		if len(marks) > maxReports {
			t.Fatalf("%d marks kept", len(marks))
		}
	case errors.As(err, &ie), errors.Is(err, errdefs.ErrInvalid), strings.Contains(err.Error(), "read status"):
	default:
		t.Fatalf("%q: unexpected error %v", in, err)
	}
	return marks, ready, err
}

func TestReadReports(t *testing.T) {
	marks, ready, err := checkReports(t, `{"mark":{"phase":"config","t":5}}`+"\n"+`{"mark":{"phase":"rootfs","t":9}}`+"\n"+`{"ready":true}`+"\n")
	if err != nil || !ready || len(marks) != 2 || marks[1].Phase != "rootfs" {
		t.Fatalf("%v %v %v", marks, ready, err)
	}
	if ps := phasesOf(1, marks); len(ps) != 2 || ps[0].D != 4 || ps[1].D != 4 {
		t.Errorf("phases %v", ps)
	}
	_, _, err = checkReports(t, `{"mark":{"phase":"config","t":5}}`+"\n"+`{"error":{"Step":"exec","Msg":"exec /x: no such file","Errno":2}}`+"\n")
	var ie *InitError
	if !errors.As(err, &ie) || ie.Step != "exec" {
		t.Errorf("error report: %v", err)
	}
	for _, bad := range []string{"not json\n", strings.Repeat(`{"mark":{"phase":"x","t":1}}`+"\n", maxReports+1), strings.Repeat("x", 70000)} {
		if _, _, err := checkReports(t, bad); err == nil {
			t.Errorf("%.40q accepted", bad)
		}
	}
}

func FuzzReadReports(f *testing.F) {
	f.Add(`{"mark":{"phase":"config","t":5}}` + "\n" + `{"ready":true}` + "\n")
	f.Add(`{"error":{"Step":"exec","Msg":"x","Errno":2}}`)
	f.Add("{}\n{\"mark\":null}\n")
	f.Fuzz(func(t *testing.T, in string) { checkReports(t, in) })
}
