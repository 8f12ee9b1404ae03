package image

import (
	"errors"
	"slices"
	"testing"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// checkWS is the body of the fixed-input tests and the fuzz target: a
// working-set file parses to sorted, aligned ranges inside pages.img that
// encode back to the same bytes, or is refused as ErrInvalid.
func checkWS(t *testing.T, b []byte, pagesSize uint64) ([]Range, error) {
	rs, err := parseWS(b, pagesSize)
	if err != nil {
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Fatalf("parseWS: %v, want ErrInvalid", err)
		}
		return nil, err
	}
	if !slices.Equal(encodeWS(rs), b) {
		t.Fatalf("ws %x does not encode back to itself", b)
	}
	var end uint64
	for _, r := range rs {
		if r.Off < end || r.Off%pageSize != 0 || r.Len == 0 || r.Off+r.Len > pagesSize {
			t.Fatalf("range %+v accepted", r)
		}
		end = r.Off + r.Len
	}
	return rs, nil
}

func TestParseWS(t *testing.T) {
	good := []Range{{Off: 0, Len: pageSize}, {Off: 4 * pageSize, Len: 2 * pageSize}}
	if rs, err := checkWS(t, encodeWS(good), 8*pageSize); err != nil || !slices.Equal(rs, good) {
		t.Fatalf("%v %v", rs, err)
	}
	for name, b := range map[string][]byte{
		"outside pages.img": encodeWS([]Range{{Off: 8 * pageSize, Len: pageSize}}),
		"unsorted":          encodeWS([]Range{{Off: 4 * pageSize, Len: pageSize}, {Off: 0, Len: pageSize}}),
		"unaligned":         encodeWS([]Range{{Off: 1, Len: pageSize}}),
		"empty range":       encodeWS([]Range{{Off: 0, Len: 0}}),
		"trailing bytes":    append(encodeWS(good), 0),
		"short":             encodeWS(good)[:20],
		"garbage":           []byte("not a working set"),
	} {
		if _, err := checkWS(t, b, 8*pageSize); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseWS(f *testing.F) {
	f.Add(encodeWS([]Range{{Off: 0, Len: pageSize}, {Off: 4 * pageSize, Len: 2 * pageSize}}))
	f.Add(encodeWS(nil))
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, b []byte) { checkWS(t, b, 64*pageSize) })
}
