package ptrace

import (
	"encoding/binary"
	"fmt"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// Batch format constants (version 1). The layout is described in doc.go;
// executor/executor.c mirrors it.
const (
	BatchMagic   = 0x54425a43 // "CZBT" little-endian
	BatchVersion = 1

	headerSize  = 64
	entrySize   = 64
	resultsHead = 16 // status, index

	// MaxEntries bounds the entry count a batch may declare.
	MaxEntries = 1 << 16
)

// Flag modifies how the executor runs one entry.
type Flag uint16

const (
	// StopOnError is the default (no flag): a result in [-4095, -1] stops
	// the batch; Results.Index names the entry.
	StopOnError Flag = 0
	// IgnoreError records a negative result and goes on.
	IgnoreError Flag = 0x1
	// ForkPoint: after this entry (a fork-like clone/clone3/fork) the child
	// (result 0) runs the following entries and the parent (result > 0)
	// stops at once with status StatusForkParent. Only for clones without
	// CLONE_VM: the child keeps running on its copy of the executor stack.
	ForkPoint Flag = 0x2
	// RepeatWhilePositive re-issues the syscall while it returns > 0
	// (wait4(-1, NULL, WNOHANG|__WALL, NULL) reaps every zombie). The last
	// (non-positive) result is recorded.
	RepeatWhilePositive Flag = 0x4
	// StopAfter traps (int3) after this entry; the tracer may act and then
	// Resume the batch.
	StopAfter Flag = 0x8

	knownFlags = IgnoreError | ForkPoint | RepeatWhilePositive | StopAfter
)

// Relocation kinds, two bits per argument in Entry.Reloc (bits 2k, 2k+1
// for argument k).
const (
	RelocLit    = 0 // the argument as written
	RelocResult = 1 // the result of entry Args[k] (an earlier entry)
	RelocData   = 2 // the address of the data area + Args[k]
	RelocLoad32 = 3 // the int32 at data area + Args[k], sign-extended (fds written by pipe2/socketpair)
)

// Status is what the executor reports in the results area.
type Status uint64

const (
	StatusNotRun     Status = 0
	StatusRunning    Status = 1 // only seen if the tracee died mid-batch
	StatusDone       Status = 2 // every entry ran
	StatusError      Status = 3 // entry Index failed (StopOnError)
	StatusPaused     Status = 4 // stopped after entry Index (StopAfter)
	StatusForkParent Status = 5 // entry Index was a ForkPoint; this is the parent
)

func (s Status) String() string {
	switch s {
	case StatusNotRun:
		return "not run"
	case StatusRunning:
		return "running"
	case StatusDone:
		return "done"
	case StatusError:
		return "error"
	case StatusPaused:
		return "paused"
	case StatusForkParent:
		return "fork parent"
	}
	return fmt.Sprintf("status(%d)", uint64(s))
}

// Entry is one syscall of a batch, as laid out in the binary format.
type Entry struct {
	Nr    uint32
	Flags Flag
	Reloc uint32
	Args  [6]uint64
}

// Arg is one syscall argument under construction: a literal, a reference
// to an earlier result, or a place in the data area.
type Arg struct {
	kind uint8
	val  uint64
}

// Lit is a literal argument (negative values such as AT_FDCWD are fine).
func Lit(v int64) Arg { return Arg{RelocLit, uint64(v)} }

// Ptr is a literal address in the tracee.
func Ptr(addr uintptr) Arg { return Arg{RelocLit, uint64(addr)} }

// DataOffset returns the offset in the data area of an argument made by
// Batch.String, Batch.Bytes or Batch.Space, and false for other kinds.
func (a Arg) DataOffset() (int, bool) { return int(a.val), a.kind == RelocData }

// Load32 returns an argument that the executor loads, at run time, from the
// int32 stored at a (an argument made by Bytes or Space) plus off: the fds
// pipe2 or socketpair wrote into the data area.
func Load32(a Arg, off int) Arg {
	if a.kind != RelocData {
		panic("ptrace: Load32 of an argument that is not in the data area")
	}
	if (a.val+uint64(off))%4 != 0 {
		panic("ptrace: Load32 of a misaligned int32")
	}
	return Arg{RelocLoad32, a.val + uint64(off)}
}

// Ref names an entry added to a Batch.
type Ref struct {
	b   *Batch
	idx int
}

// Index is the entry's position in the batch.
func (r Ref) Index() int { return r.idx }

// Result is an argument that the executor replaces by this entry's result.
func (r Ref) Result() Arg { return Arg{RelocResult, uint64(r.idx)} }

// With sets flags on the entry and returns r.
func (r Ref) With(f Flag) Ref {
	r.b.entries[r.idx].Flags |= f
	return r
}

// Batch builds a batch of syscalls. The zero value is not usable; call
// NewBatch. Builder methods panic on programmer errors (too many
// arguments, a Ref from another batch); Encode output always validates.
type Batch struct {
	entries []Entry
	data    []byte
}

// NewBatch returns an empty batch.
func NewBatch() *Batch { return &Batch{} }

// Len is the number of entries.
func (b *Batch) Len() int { return len(b.entries) }

// Entries returns the entries (shared, do not modify).
func (b *Batch) Entries() []Entry { return b.entries }

// Data returns the data area (shared, do not modify).
func (b *Batch) Data() []byte { return b.data }

// Add appends syscall nr with up to six arguments.
func (b *Batch) Add(nr uintptr, args ...Arg) Ref {
	if len(args) > 6 {
		panic("ptrace: more than six syscall arguments")
	}
	if len(b.entries) >= MaxEntries {
		panic("ptrace: too many entries")
	}
	e := Entry{Nr: uint32(nr)}
	for k, a := range args {
		if a.kind == RelocResult && a.val >= uint64(len(b.entries)) {
			panic("ptrace: result reference to a later entry")
		}
		e.Args[k] = a.val
		e.Reloc |= uint32(a.kind) << (2 * k)
	}
	b.entries = append(b.entries, e)
	return Ref{b, len(b.entries) - 1}
}

// Clone returns a deep copy of b: a cached plan is cloned before each
// run patches it (SetArg, SetBytes).
func (b *Batch) Clone() *Batch {
	return &Batch{entries: append([]Entry(nil), b.entries...), data: append([]byte(nil), b.data...)}
}

// SetArg overwrites literal argument k of entry i with v: values only known
// at run time (an address in the tracee, an fd it received). It panics if
// the argument is not a literal (RelocLit).
func (b *Batch) SetArg(i, k int, v uint64) {
	e := &b.entries[i]
	if k < 0 || k >= 6 || (e.Reloc>>(2*k))&3 != RelocLit {
		panic("ptrace: SetArg of an argument that is not a literal")
	}
	e.Args[k] = v
}

// DataAt is an argument pointing at offset off of the data area: for a
// decoded batch (whose Bytes/Space arguments are gone) to use with
// SetBytes and Tracee.DataAddr. It panics if off is past the data area.
func (b *Batch) DataAt(off int) Arg {
	if off < 0 || off > len(b.data) {
		panic("ptrace: DataAt outside the data area")
	}
	return Arg{RelocData, uint64(off)}
}

// Bytes copies p into the data area (8-byte aligned) and returns its
// address as an argument.
func (b *Batch) Bytes(p []byte) Arg {
	for len(b.data)%8 != 0 {
		b.data = append(b.data, 0)
	}
	off := len(b.data)
	b.data = append(b.data, p...)
	return Arg{RelocData, uint64(off)}
}

// SetBytes overwrites the data at a (made by Bytes, String or Space) with
// p, which must fit: for structs that hold pointers into the data area,
// patched once the batch's address is known (see Tracee.DataAddr).
func (b *Batch) SetBytes(a Arg, p []byte) {
	off, ok := a.DataOffset()
	if !ok || off+len(p) > len(b.data) {
		panic("ptrace: SetBytes outside the data area")
	}
	copy(b.data[off:], p)
}

// String stores s NUL-terminated in the data area.
func (b *Batch) String(s string) Arg { return b.Bytes(append([]byte(s), 0)) }

// Space reserves n zeroed bytes (an out-parameter: struct stat, pipe fds).
func (b *Batch) Space(n int) Arg { return b.Bytes(make([]byte, n)) }

type layout struct {
	entriesOff, dataOff, dataSize, resultsOff, total int
}

func align8(n int) int { return (n + 7) &^ 7 }

func (b *Batch) layout() layout {
	var l layout
	l.entriesOff = headerSize
	l.dataOff = l.entriesOff + entrySize*len(b.entries)
	l.dataSize = len(b.data)
	l.resultsOff = align8(l.dataOff + l.dataSize)
	l.total = l.resultsOff + resultsHead + 8*len(b.entries)
	return l
}

// Encode returns the binary batch: header, entries, data area, zeroed
// results area.
func (b *Batch) Encode() []byte {
	l := b.layout()
	buf := make([]byte, l.total)
	le := binary.LittleEndian
	le.PutUint32(buf[0:], BatchMagic)
	le.PutUint16(buf[4:], BatchVersion)
	le.PutUint16(buf[6:], headerSize)
	le.PutUint32(buf[8:], uint32(len(b.entries)))
	le.PutUint32(buf[12:], entrySize)
	le.PutUint32(buf[16:], uint32(l.entriesOff))
	le.PutUint32(buf[20:], uint32(l.dataOff))
	le.PutUint32(buf[24:], uint32(l.dataSize))
	le.PutUint32(buf[28:], uint32(l.resultsOff))
	le.PutUint32(buf[32:], uint32(l.total))
	for i, e := range b.entries {
		p := buf[l.entriesOff+i*entrySize:]
		le.PutUint32(p[0:], e.Nr)
		le.PutUint16(p[4:], uint16(e.Flags))
		le.PutUint32(p[8:], e.Reloc)
		for k, a := range e.Args {
			le.PutUint64(p[16+8*k:], a)
		}
	}
	copy(buf[l.dataOff:], b.data)
	return buf
}

// Validate checks a binary batch; see Decode.
func Validate(buf []byte) error {
	_, err := Decode(buf)
	return err
}

// Decode parses and validates a binary batch. It rejects a bad magic or
// version, sizes other than version 1's, regions (entries, data, results)
// outside the buffer, misaligned or overlapping, unknown flags or nonzero
// reserved fields, and relocations that point forward (a result not yet
// computed) or outside the data area. Errors wrap errdefs.ErrInvalid.
// The returned Batch encodes to the canonical layout.
func Decode(buf []byte) (*Batch, error) {
	h, err := decodeHeader(buf)
	if err != nil {
		return nil, err
	}
	if err := h.checkRegions(); err != nil {
		return nil, err
	}
	b := &Batch{data: append([]byte(nil), buf[h.dataOff:h.dataOff+h.dataSize]...)}
	b.entries = make([]Entry, 0, h.count)
	for i := uint64(0); i < h.count; i++ {
		e, err := decodeEntry(buf[h.entriesOff+i*entrySize:], i, h.dataSize)
		if err != nil {
			return nil, err
		}
		b.entries = append(b.entries, e)
	}
	return b, nil
}

// badBatch is the error Decode returns for what format describes.
func badBatch(format string, a ...any) error {
	return fmt.Errorf("batch: %s: %w", fmt.Sprintf(format, a...), errdefs.ErrInvalid)
}

// header is the layout a binary batch's header declares, in uint64 so
// that sums of its uint32 fields cannot overflow.
type header struct {
	count, entriesOff, dataOff, dataSize, resultsOff, total uint64
}

// decodeHeader reads and checks buf's header: magic, version, sizes,
// flags, reserved bytes, the entry count and the total size against the
// buffer. Where the regions lie is checkRegions' job.
func decodeHeader(buf []byte) (header, error) {
	if len(buf) < headerSize {
		return header{}, badBatch("%d bytes is shorter than the header", len(buf))
	}
	le := binary.LittleEndian
	if m := le.Uint32(buf[0:]); m != BatchMagic {
		return header{}, badBatch("bad magic %#x", m)
	}
	if v := le.Uint16(buf[4:]); v != BatchVersion {
		return header{}, badBatch("unsupported version %d (want %d)", v, BatchVersion)
	}
	if hs := le.Uint16(buf[6:]); hs != headerSize {
		return header{}, badBatch("header size %d (want %d)", hs, headerSize)
	}
	h := header{count: uint64(le.Uint32(buf[8:]))}
	if es := le.Uint32(buf[12:]); es != entrySize {
		return header{}, badBatch("entry size %d (want %d)", es, entrySize)
	}
	h.entriesOff = uint64(le.Uint32(buf[16:]))
	h.dataOff = uint64(le.Uint32(buf[20:]))
	h.dataSize = uint64(le.Uint32(buf[24:]))
	h.resultsOff = uint64(le.Uint32(buf[28:]))
	h.total = uint64(le.Uint32(buf[32:]))
	if f := le.Uint32(buf[36:]); f != 0 {
		return header{}, badBatch("unknown header flags %#x", f)
	}
	for i := 40; i < headerSize; i++ {
		if buf[i] != 0 {
			return header{}, badBatch("reserved header byte %d is not zero", i)
		}
	}
	if h.count > MaxEntries {
		return header{}, badBatch("%d entries (max %d)", h.count, MaxEntries)
	}
	if h.total > uint64(len(buf)) {
		return header{}, badBatch("total size %d exceeds the buffer (%d bytes)", h.total, len(buf))
	}
	return h, nil
}

// checkRegions checks that the header, entries, data and results regions
// are 8-byte aligned, inside the batch and disjoint.
func (h header) checkRegions() error {
	type region struct {
		name     string
		off, end uint64
	}
	regs := []region{
		{"header", 0, headerSize},
		{"entries", h.entriesOff, h.entriesOff + h.count*entrySize},
		{"data", h.dataOff, h.dataOff + h.dataSize},
		{"results", h.resultsOff, h.resultsOff + resultsHead + 8*h.count},
	}
	for _, r := range regs {
		if r.off%8 != 0 {
			return badBatch("%s offset %d is not 8-byte aligned", r.name, r.off)
		}
		if r.end > h.total {
			return badBatch("%s [%d, %d) outside the batch (%d bytes)", r.name, r.off, r.end, h.total)
		}
	}
	for i := range regs {
		for j := i + 1; j < len(regs); j++ {
			a, c := regs[i], regs[j]
			if a.off < c.end && c.off < a.end {
				return badBatch("%s and %s overlap", a.name, c.name)
			}
		}
	}
	return nil
}

// decodeEntry reads entry i from p and checks its flags, reserved fields
// and relocations (dataSize: the data area's size).
func decodeEntry(p []byte, i, dataSize uint64) (Entry, error) {
	le := binary.LittleEndian
	e := Entry{Nr: le.Uint32(p[0:]), Flags: Flag(le.Uint16(p[4:])), Reloc: le.Uint32(p[8:])}
	if e.Flags&^knownFlags != 0 {
		return Entry{}, badBatch("entry %d: unknown flags %#x", i, uint16(e.Flags&^knownFlags))
	}
	if le.Uint16(p[6:]) != 0 || le.Uint32(p[12:]) != 0 {
		return Entry{}, badBatch("entry %d: reserved field is not zero", i)
	}
	if e.Reloc>>12 != 0 {
		return Entry{}, badBatch("entry %d: relocation bits above argument 6: %#x", i, e.Reloc)
	}
	for k := range e.Args {
		a := le.Uint64(p[16+8*k:])
		e.Args[k] = a
		if err := checkReloc(i, k, (e.Reloc>>(2*k))&3, a, dataSize); err != nil {
			return Entry{}, err
		}
	}
	return e, nil
}

// checkReloc checks argument k (value a, relocation kind) of entry i: a
// result must be an earlier entry's, data must lie in the data area.
func checkReloc(i uint64, k int, kind uint32, a, dataSize uint64) error {
	switch kind {
	case RelocResult:
		if a >= i {
			return badBatch("entry %d: argument %d uses the result of entry %d, which has not run yet", i, k, a)
		}
	case RelocData:
		if a > dataSize {
			return badBatch("entry %d: argument %d points at data offset %d, past the data area (%d bytes)", i, k, a, dataSize)
		}
	case RelocLoad32:
		if a > dataSize || dataSize-a < 4 || a%4 != 0 {
			return badBatch("entry %d: argument %d loads 4 bytes at data offset %d (data area %d bytes, must be aligned)", i, k, a, dataSize)
		}
	}
	return nil
}
