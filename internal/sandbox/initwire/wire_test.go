package initwire

import (
	"errors"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// checkReports is the body of the fixed-input tests and the fuzz target:
// a stream gives marks, or an *InitError, or ErrInvalid, or a read error;
// never more marks than MaxReports.
func checkReports(t *testing.T, in string) ([]Mark, bool, error) {
	marks, ready, err := ReadReports(strings.NewReader(in))
	var ie *InitError
	switch {
	case err == nil:
		if len(marks) > MaxReports {
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
	if err != nil || !ready || len(marks) != 2 || marks[1].Phase != "rootfs" || marks[1].T != 9 {
		t.Fatalf("%v %v %v", marks, ready, err)
	}
	_, _, err = checkReports(t, `{"mark":{"phase":"config","t":5}}`+"\n"+`{"error":{"Step":"exec","Msg":"exec /x: no such file","Errno":2}}`+"\n")
	var ie *InitError
	if !errors.As(err, &ie) || ie.Step != "exec" {
		t.Errorf("error report: %v", err)
	}
	for _, bad := range []string{"not json\n", strings.Repeat(`{"mark":{"phase":"x","t":1}}`+"\n", MaxReports+1), strings.Repeat("x", 70000)} {
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
