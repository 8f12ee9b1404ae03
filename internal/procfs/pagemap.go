package procfs

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// PageSize is the size of a page pagemap has one entry for.
var PageSize = uint64(os.Getpagesize())

// PageEntry is one 64-bit entry of /proc/PID/pagemap: what backs one
// virtual page (Documentation/admin-guide/mm/pagemap.rst).
type PageEntry uint64

// Present: the page is in RAM (bit 63).
func (e PageEntry) Present() bool { return e&(1<<63) != 0 }

// Swapped: the page is in swap (bit 62).
func (e PageEntry) Swapped() bool { return e&(1<<62) != 0 }

// FileOrShared: the page is a page-cache page of a file or shared
// anonymous memory, not a private anonymous copy (bit 61).
func (e PageEntry) FileOrShared() bool { return e&(1<<61) != 0 }

// Exclusive: the page is mapped by this process alone (bit 56).
func (e PageEntry) Exclusive() bool { return e&(1<<56) != 0 }

// SoftDirty: written since the soft-dirty bits were last cleared (bit 55).
func (e PageEntry) SoftDirty() bool { return e&(1<<55) != 0 }

// PFN is the page frame number of a present page (bits 0-54); it reads 0
// without CAP_SYS_ADMIN.
func (e PageEntry) PFN() uint64 { return uint64(e) & (1<<55 - 1) }

// ParsePagemap splits bytes read from /proc/PID/pagemap into entries, one
// each 8 bytes, native-endian. A length that is not a multiple of 8 is an
// error wrapping ErrFormat.
func ParsePagemap(b []byte) ([]PageEntry, error) {
	if len(b)%8 != 0 {
		return nil, fmt.Errorf("pagemap read of %d bytes: %w", len(b), ErrFormat)
	}
	out := make([]PageEntry, len(b)/8)
	for i := range out {
		out[i] = PageEntry(binary.NativeEndian.Uint64(b[8*i:]))
	}
	return out, nil
}

// Pagemap is an open /proc/PID/pagemap. Opening it has the package doc's
// errors; reading it from a process that has exited since reads nothing
// (an error from Read).
type Pagemap struct {
	pid int
	f   *os.File
}

// OpenPagemap opens /proc/PID/pagemap.
func OpenPagemap(pid int) (*Pagemap, error) {
	if err := checkPID(pid); err != nil {
		return nil, err
	}
	f, err := os.Open(path(pid, "pagemap"))
	if err != nil {
		return nil, vanished(err)
	}
	if err := alive(pid); err != nil {
		f.Close()
		return nil, err
	}
	return &Pagemap{pid: pid, f: f}, nil
}

// Read returns the entries of the pages in [start, end), addresses that
// are multiples of PageSize (else an error wrapping errdefs.ErrInvalid).
func (p *Pagemap) Read(start, end uint64) ([]PageEntry, error) {
	if start%PageSize != 0 || end%PageSize != 0 || end < start {
		return nil, fmt.Errorf("procfs: pagemap range %#x-%#x: %w", start, end, errdefs.ErrInvalid)
	}
	b := make([]byte, 8*((end-start)/PageSize))
	if _, err := p.f.ReadAt(b, int64(start/PageSize*8)); err != nil {
		return nil, fmt.Errorf("procfs: pagemap of %v at %#x: %w", procName(p.pid), start, vanished(err))
	}
	return ParsePagemap(b)
}

// Close closes the file.
func (p *Pagemap) Close() error { return p.f.Close() }
