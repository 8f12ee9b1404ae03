package initwire

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// checkReports is the body of the fixed-input tests and the fuzz target:
// each Next of a stream gives marks, or an *InitError, or ErrInvalid, or
// a read error; never more marks than MaxReports in all. It returns the
// first Next's result, as the host reads a helper's setup.
func checkReports(t *testing.T, in string) ([]Mark, bool, error) {
	r := NewReports(strings.NewReader(in))
	var first struct {
		marks []Mark
		ready bool
		err   error
	}
	total := 0
	for i := 0; ; i++ {
		marks, ready, err := r.Next()
		if i == 0 {
			first.marks, first.ready, first.err = marks, ready, err
		}
		total += len(marks)
		var ie *InitError
		switch {
		case err == nil:
			if total > MaxReports {
				t.Fatalf("%d marks kept", total)
			}
		case errors.As(err, &ie), errors.Is(err, errdefs.ErrInvalid), strings.Contains(err.Error(), "read status"):
		default:
			t.Fatalf("%q: unexpected error %v", in, err)
		}
		if !ready || err != nil {
			return first.marks, first.ready, first.err
		}
	}
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
	// A sandbox's stream: setup to ready, then the process part to EOF.
	r := NewReports(strings.NewReader(`{"mark":{"phase":"net","t":5}}` + "\n" + `{"ready":true}` + "\n" + `{"mark":{"phase":"security","t":7}}` + "\n"))
	if marks, ready, err := r.Next(); err != nil || !ready || len(marks) != 1 {
		t.Fatalf("setup: %v %v %v", marks, ready, err)
	}
	if marks, ready, err := r.Next(); err != nil || ready || len(marks) != 1 || marks[0].Phase != "security" {
		t.Fatalf("process: %v %v %v", marks, ready, err)
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

// checkFilter is FuzzDecodeFilter's body: DecodeFilter takes whole
// instructions only (else ErrInvalid), and EncodeFilter gives back the
// very bytes.
func checkFilter(t *testing.T, b []byte) []unix.SockFilter {
	t.Helper()
	prog, err := DecodeFilter(b)
	if len(b)%8 != 0 {
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Fatalf("%d bytes: %v, want ErrInvalid", len(b), err)
		}
		return nil
	}
	if err != nil || len(prog) != len(b)/8 {
		t.Fatalf("%d bytes: %d instructions, %v", len(b), len(prog), err)
	}
	if back := EncodeFilter(prog); !bytes.Equal(back, b) || (back == nil) != (b == nil) {
		t.Fatalf("round trip of %x gave %x", b, back)
	}
	return prog
}

func TestFilterEncoding(t *testing.T) {
	prog := []unix.SockFilter{{Code: 0x20, K: 4}, {Code: 0x15, Jt: 1, Jf: 2, K: 0xc000003e}, {Code: 6, K: 0x7fff0000}}
	if got := checkFilter(t, EncodeFilter(prog)); !slices.Equal(got, prog) {
		t.Fatalf("round trip: %v", got)
	}
	if p := checkFilter(t, nil); p != nil {
		t.Errorf("nil: %v", p)
	}
	checkFilter(t, make([]byte, 7))
}

func FuzzDecodeFilter(f *testing.F) {
	f.Add([]byte(nil))
	f.Add(make([]byte, 7))
	f.Add(EncodeFilter([]unix.SockFilter{{Code: 0x20, K: 4}, {Code: 6, K: 0x7fff0000}}))
	f.Fuzz(func(t *testing.T, b []byte) { checkFilter(t, b) })
}
