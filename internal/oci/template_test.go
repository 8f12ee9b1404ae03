package oci

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// countingReader counts the bytes read from an endless stream of 'x'.
type countingReader struct{ n int }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	c.n += len(p)
	return len(p), nil
}

// TestReadReady: the readiness line a tenant writes is read with a bound;
// an endless line without a newline is refused after readyLineMax bytes
// instead of growing the holder (host root) without limit.
func TestReadReady(t *testing.T) {
	if err := readReady(strings.NewReader("ready\n")); err != nil {
		t.Errorf("ready: %v", err)
	}
	if err := readReady(strings.NewReader("")); !errors.Is(err, io.EOF) {
		t.Errorf("closed: %v, want EOF", err)
	}
	if err := readReady(strings.NewReader("rea")); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("closed mid-line: %v, want ErrUnexpectedEOF", err)
	}
	if err := readReady(strings.NewReader("go\n")); err == nil || !strings.Contains(err.Error(), `"go\n"`) {
		t.Errorf("other word: %v", err)
	}
	endless := &countingReader{}
	err := readReady(endless)
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("endless line: %v, want a refusal", err)
	}
	if endless.n > readyLineMax {
		t.Errorf("read %d bytes of an endless line, want at most %d", endless.n, readyLineMax)
	}
}
