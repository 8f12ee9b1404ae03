package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/catalyzer/catalyzer/internal/atomicfile"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/kobj"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// FormatVersion is the version of the image format (docs/IMAGE.md). It
// changes only when the format does, never with the binary's version.
// Version 2 added the thread records, version 3 objects.bin (event
// objects and pipes, re-created by package kobj), version 4 the POSIX
// timer and queued signal tables; an image of an older version is
// refused (errdefs.ErrInvalid) and must be taken again.
const FormatVersion = 4

// File names inside an image directory.
const (
	ManifestFile = "manifest.bin"
	MetaFile     = "meta.bin"
	PlanFile     = "plan.bin"
	PagesFile    = "pages.img"
	ObjectsFile  = "objects.bin"
	WSFile       = "ws.bin"
	DebugFile    = "image.json" // never read by restore
)

var (
	manifestMagic = [8]byte{'C', 'Z', 'I', 'M', 'A', 'G', 'E', 0}
	metaMagic     = [8]byte{'C', 'Z', 'M', 'E', 'T', 'A', 0, 0}
	wsMagic       = [8]byte{'C', 'Z', 'W', 'S', 'E', 'T', 0, 0}
)

const (
	pageSize = 4096
	// taskSize is the end of the x86-64 47-bit user address space.
	taskSize = 0x7ffffffff000
	// Limits that bound what Open accepts (and so what it allocates).
	maxVMAs      = 1 << 16
	maxRelocs    = 1 << 12
	maxFDs       = 1 << 12
	maxXState    = 1 << 16
	maxThreads   = 1024
	maxMetaSize  = 16 << 20
	maxPlanSize  = ptrace.MaxBatchSize
	maxWSRanges  = 1 << 20
	maxManifestN = 8
)

// manifest.bin: the header of an image.
type manifestHeader struct {
	Magic   [8]byte
	Version uint32
	Count   uint32
}

type manifestEntry struct {
	Name   [16]byte
	Size   uint64
	SHA256 [32]byte
}

// Kinds of VMA in the meta table.
const (
	VMAAnon       = 1 // private anonymous (heap, stack, bss): mapped from pages.img or anonymous
	VMAFilePriv   = 2 // private file mapping: the file, plus its CoW'ed pages copied from pages.img
	VMAFileShared = 3 // shared file mapping: the file
	VMAVDSO       = 4 // [vvar], [vvar_vclock], [vdso]: moved into place with mremap
)

// noPages marks a VMA without a region in pages.img.
const noPages = ^uint64(0)

// metaHeader is the fixed head of meta.bin; the tables follow it in this
// order: VMAs, relocations, fds, XStateLen bytes of xstate, the thread
// records, XStateLen bytes of xstate per thread record, the POSIX timers
// (Timer), then the queued signals (Signal).
type metaHeader struct {
	Magic     [8]byte
	Version   uint32
	Flags     uint32
	ExecAddr  uint64 // executor region at restore (ptrace.ExecutorRegionSize bytes)
	TempAddr  uint64 // where the vDSO waits while the restorer's mappings go
	TempSize  uint64
	VDSOBase  uint64 // the image's [vdso] (AT_SYSINFO_EHDR)
	PagesSize uint64 // exact size of pages.img
	NVMA      uint32
	NReloc    uint32
	NFD       uint32
	XStateLen uint32
	Pid       uint32    // the checkpointed pid (informational)
	NThread   uint32    // the process's other threads (thread records)
	MainTID   uint32    // the main thread's tid in its PID namespace (a timer's SIGEV_THREAD_ID target)
	NTimer    uint32    // POSIX timers
	NSignal   uint32    // queued signals
	_         uint32    // zero
	SigMask   uint64    // the main thread's blocked signals (a queued signal must be blocked)
	Kernel    [128]byte // uname release + " " + version: the vDSO layout depends on it
	Regs      ptrace.Regs
}

// threadRecord is one of the process's other threads: what it has of its
// own (ptrace.ThreadState); the restore plan re-creates it with a clone3
// and RestoreThreads gives it the rest.
type threadRecord struct {
	TID        uint32 // in the process's PID namespace (set_tid)
	Flags      uint32 // 0
	SigMask    uint64
	TIDAddress uint64 // clear_child_tid
	Robust     [2]uint64
	RSeq       ptrace.RSeq
	AltStack   [24]byte
	Caps       ptrace.ThreadCaps
	Comm       [16]byte // NUL-terminated
	Regs       ptrace.Regs
}

// VMA is one mapping of the checkpointed process.
type VMA struct {
	Start, End uint64
	PagesOff   uint64 // offset of the region of pages.img that backs [Start, End), or ^0
	Prot       uint32
	Kind       uint32
}

// Relocation kinds: values only known at restore, patched into a copy of
// the plan before it runs.
const (
	// RelocVDSO: entry Entry, argument Arg := the restorer's vDSO base + int64(Value).
	RelocVDSO = 1
	// RelocPagesPath: the absolute path of pages.img, NUL-terminated, at
	// data offset DataOff (Value bytes reserved).
	RelocPagesPath = 2
	// RelocDataPtr: the u64 at data offset DataOff := the address of data offset Value.
	RelocDataPtr = 3
	// RelocFD: entry Entry, argument Arg := the restorer's fd that
	// replaces the image's fd Value (RestoreOptions.Reconnect).
	RelocFD = 4
)

// Reloc is one entry of the relocation table: in batch Batch of the plan.
type Reloc struct {
	Kind    uint32
	Entry   uint32
	Arg     uint32
	DataOff uint32
	Value   uint64
	Batch   uint32
	_       uint32
}

// FD kinds in the meta table.
const (
	FDFile      = 1 // regular file, directory or allowed char device: reopened by path
	FDReconnect = 3 // the caller gives a fresh fd at restore
	// Kind 2 was a pipe (version 1 and 2); pipes are objects.bin's now.
)

// FD describes one descriptor of the checkpointed process.
type FD struct {
	Fd    int32
	Kind  uint32
	Flags uint32
	_     uint32
	Pos   int64
}

// Image is an opened, validated image.
type Image struct {
	Dir    string
	hdr    metaHeader
	VMAs   []VMA
	Relocs []Reloc
	FDs    []FD
	XState []byte
	// Threads are the process's other threads, as the restore gives them
	// back (TID 0: only NSTID, the tid in its PID namespace, is known).
	Threads []ptrace.ThreadState
	// Objects are the event objects and in-process pipes that Restore
	// re-creates once the plan has run (objects.bin, validated by
	// kobj.Decode and against the plan's descriptors).
	Objects *kobj.Table
	// Timers are the POSIX timers and Signals the queued signals that
	// Restore gives back after the threads (timers.go).
	Timers  []Timer
	Signals []Signal
	// WorkingSet lists the pages.img ranges recorded by RecordWorkingSet
	// (nil if the image has no ws.bin).
	WorkingSet []Range

	plans []*ptrace.Batch // decoded and validated by Open
}

// Range is a byte range of pages.img.
type Range struct{ Off, Len uint64 }

// Regs returns the registers the restored process resumes with.
func (img *Image) Regs() ptrace.Regs { return img.hdr.Regs }

// ExecAddr is where the plan expects the executor in the restorer.
func (img *Image) ExecAddr() uintptr { return uintptr(img.hdr.ExecAddr) }

// PagesSize is the (apparent) size of pages.img.
func (img *Image) PagesSize() uint64 { return img.hdr.PagesSize }

// Pid is the pid the image was taken from.
func (img *Image) Pid() int { return int(img.hdr.Pid) }

// Plan returns the last batch of the restore plan, decoded and
// validated by Open and shared (Restore clones it before patching
// relocations): the whole plan but for the memory of a process whose
// mappings do not fit one batch, which PlanBatches gives too.
func (img *Image) Plan() (*ptrace.Batch, error) {
	if len(img.plans) == 0 {
		return nil, invalid("no plan")
	}
	return img.plans[len(img.plans)-1], nil
}

// PlanBatches returns every batch of the restore plan, in the order they
// run.
func (img *Image) PlanBatches() []*ptrace.Batch { return img.plans }

// planMagic heads plan.bin: then u32 count and per batch u32 size and
// the encoded batch (ptrace's format v1).
var planMagic = [8]byte{'C', 'Z', 'P', 'L', 'A', 'N', 0, 0}

// maxPlanBatches bounds the batches of a plan (each at most
// ptrace.MaxBatchSize bytes; plan.bin is read whole, up to maxMetaSize).
const maxPlanBatches = 15

func encodePlan(bs []*ptrace.Batch) []byte {
	out := append([]byte(nil), planMagic[:]...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(bs)))
	for _, b := range bs {
		e := b.Encode()
		out = binary.LittleEndian.AppendUint32(out, uint32(len(e)))
		out = append(out, e...)
	}
	return out
}

// decodePlan parses plan.bin into its batches (each ptrace.Decode'd).
func decodePlan(buf []byte) ([]*ptrace.Batch, error) {
	if len(buf) < 12 || !bytes.Equal(buf[:8], planMagic[:]) {
		return nil, invalid("plan: bad magic")
	}
	n := binary.LittleEndian.Uint32(buf[8:])
	if n < 1 || n > maxPlanBatches {
		return nil, invalid("plan: %d batches (1 to %d)", n, maxPlanBatches)
	}
	buf = buf[12:]
	var out []*ptrace.Batch
	for i := range n {
		if len(buf) < 4 {
			return nil, invalid("plan: batch %d: truncated", i)
		}
		size := uint64(binary.LittleEndian.Uint32(buf))
		buf = buf[4:]
		if size > maxPlanSize || size > uint64(len(buf)) {
			return nil, invalid("plan: batch %d: %d bytes (max %d, %d left)", i, size, maxPlanSize, len(buf))
		}
		b, err := ptrace.Decode(buf[:size])
		if err != nil {
			return nil, fmt.Errorf("image: plan batch %d: %w", i, err)
		}
		out = append(out, b)
		buf = buf[size:]
	}
	if len(buf) != 0 {
		return nil, invalid("plan: %d trailing bytes", len(buf))
	}
	return out, nil
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("image: %s: %w", fmt.Sprintf(format, a...), errdefs.ErrInvalid)
}

// ErrChecksum is wrapped when a file does not match the manifest.
var ErrChecksum = errors.New("checksum mismatch")

// Open reads and validates the image in dir: the manifest (format
// version, sizes and sha256 of meta.bin, plan.bin and ws.bin; the size of
// pages.img — hashing it would read every page, see Verify), meta.bin and
// plan.bin (Validate). Nothing runs; a hostile or corrupt image is an
// error wrapping errdefs.ErrInvalid.
func Open(dir string) (*Image, error) {
	mb, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	ents, err := parseManifest(mb)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	var pagesSize int64 = -1
	for _, e := range ents {
		name := entryName(e)
		if name == PagesFile {
			st, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				return nil, fmt.Errorf("open image: %w", err)
			}
			if uint64(st.Size()) != e.Size {
				return nil, invalid("%s is %d bytes, the manifest says %d (truncated?)", name, st.Size(), e.Size)
			}
			pagesSize = st.Size()
			continue
		}
		b, err := readLimited(filepath.Join(dir, name), maxMetaSize)
		if err != nil {
			return nil, fmt.Errorf("open image: %w", err)
		}
		if uint64(len(b)) != e.Size {
			return nil, invalid("%s is %d bytes, the manifest says %d", name, len(b), e.Size)
		}
		if sha256.Sum256(b) != e.SHA256 {
			return nil, fmt.Errorf("image: %s: %w: %w", name, ErrChecksum, errdefs.ErrInvalid)
		}
		files[name] = b
	}
	if files[MetaFile] == nil || files[PlanFile] == nil || files[ObjectsFile] == nil || pagesSize < 0 {
		return nil, invalid("manifest lacks %s, %s, %s or %s", MetaFile, PlanFile, ObjectsFile, PagesFile)
	}
	img, err := decode(files[MetaFile], files[PlanFile], uint64(pagesSize))
	if err != nil {
		return nil, err
	}
	if img.Objects, err = decodeObjects(img, files[ObjectsFile]); err != nil {
		return nil, err
	}
	if ws := files[WSFile]; ws != nil {
		if img.WorkingSet, err = parseWS(ws, img.hdr.PagesSize); err != nil {
			return nil, err
		}
	}
	img.Dir = dir
	return img, nil
}

// decodeObjects parses objects.bin and checks it against the image: each
// shared memory range is an anonymous VMA of the image with its
// protection, the scratch range where it is rebuilt meets no VMA and not
// the executor region, and no descriptor is made by the plan too.
func decodeObjects(img *Image, b []byte) (*kobj.Table, error) {
	t, err := kobj.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("image: %s: %w", ObjectsFile, err)
	}
	var largest uint64
	for _, m := range t.Memory {
		if !slices.ContainsFunc(img.VMAs, func(v VMA) bool {
			return v.Start == m.Start && v.End == m.End && v.Kind == VMAAnon && v.Prot == uint32(m.Prot)
		}) {
			return nil, invalid("%s: shared memory %x-%x is not an anonymous mapping of the image", ObjectsFile, m.Start, m.End)
		}
		largest = max(largest, m.End-m.Start)
	}
	if largest > 0 {
		lo, hi := t.Scratch, t.Scratch+largest
		meets := func(start, end uint64) bool { return start < hi && lo < end }
		if meets(img.hdr.ExecAddr, img.hdr.TempAddr+img.hdr.TempSize) ||
			slices.ContainsFunc(img.VMAs, func(v VMA) bool { return meets(v.Start, v.End) }) {
			return nil, invalid("%s: scratch range %x-%x meets a mapping or the executor", ObjectsFile, lo, hi)
		}
	}
	planned := map[int]bool{}
	for _, f := range img.FDs {
		planned[int(f.Fd)] = true
	}
	for _, fd := range t.FDs() {
		if planned[fd] {
			return nil, invalid("%s: descriptor %d is made by the plan too", ObjectsFile, fd)
		}
	}
	return t, nil
}

func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		err = invalid("%s is larger than %d bytes", filepath.Base(path), max)
	}
	return b, err
}

func entryName(e manifestEntry) string {
	return string(bytes.TrimRight(e.Name[:], "\x00"))
}

func parseManifest(b []byte) ([]manifestEntry, error) {
	r := bytes.NewReader(b)
	var h manifestHeader
	if err := binary.Read(r, binary.LittleEndian, &h); err != nil {
		return nil, invalid("manifest: %v", err)
	}
	if h.Magic != manifestMagic {
		return nil, invalid("manifest: bad magic %q", h.Magic[:])
	}
	if h.Version < FormatVersion {
		return nil, fmt.Errorf("image: format version %d is older than this binary's %d (it has no thread records): checkpoint the process again: %w",
			h.Version, FormatVersion, errdefs.ErrInvalid)
	}
	if h.Version != FormatVersion {
		return nil, fmt.Errorf("image: format version %d, this binary reads version %d: %w", h.Version, FormatVersion, errdefs.ErrNotSupported)
	}
	if h.Count > maxManifestN {
		return nil, invalid("manifest: %d files (max %d)", h.Count, maxManifestN)
	}
	ents := make([]manifestEntry, h.Count)
	if err := binary.Read(r, binary.LittleEndian, ents); err != nil {
		return nil, invalid("manifest: %v", err)
	}
	if r.Len() != 0 {
		return nil, invalid("manifest: %d trailing bytes", r.Len())
	}
	seen := map[string]bool{}
	for _, e := range ents {
		n := entryName(e)
		switch n {
		case MetaFile, PlanFile, ObjectsFile, PagesFile, WSFile:
		default:
			return nil, invalid("manifest: unknown file %q", n)
		}
		if seen[n] {
			return nil, invalid("manifest: %s listed twice", n)
		}
		seen[n] = true
	}
	return ents, nil
}

// writeManifest hashes the named files of dir and writes manifest.bin.
func writeManifest(dir string, names []string) error {
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, manifestHeader{Magic: manifestMagic, Version: FormatVersion, Count: uint32(len(names))})
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		h := sha256.New()
		sz, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		var e manifestEntry
		copy(e.Name[:], n)
		e.Size = uint64(sz)
		copy(e.SHA256[:], h.Sum(nil))
		binary.Write(&buf, binary.LittleEndian, e)
	}
	return atomicfile.WriteFile(filepath.Join(dir, ManifestFile), buf.Bytes(), 0o644)
}

// Verify hashes pages.img and compares it with the manifest (Open checks
// only its size: hashing reads every page).
func (img *Image) Verify() error {
	mb, err := os.ReadFile(filepath.Join(img.Dir, ManifestFile))
	if err != nil {
		return err
	}
	ents, err := parseManifest(mb)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if entryName(e) != PagesFile {
			continue
		}
		f, err := os.Open(filepath.Join(img.Dir, PagesFile))
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		if !bytes.Equal(h.Sum(nil), e.SHA256[:]) {
			return fmt.Errorf("image: %s: %w: %w", PagesFile, ErrChecksum, errdefs.ErrInvalid)
		}
		return nil
	}
	return invalid("manifest lacks %s", PagesFile)
}

// decode parses meta.bin and plan.bin and validates them together.
func decode(meta, plan []byte, pagesSize uint64) (*Image, error) {
	r := bytes.NewReader(meta)
	img := &Image{}
	if err := binary.Read(r, binary.LittleEndian, &img.hdr); err != nil {
		return nil, invalid("meta: header: %v", err)
	}
	h := &img.hdr
	if h.Magic != metaMagic {
		return nil, invalid("meta: bad magic")
	}
	if h.Version != FormatVersion {
		return nil, invalid("meta: version %d (want %d)", h.Version, FormatVersion)
	}
	if h.Flags != 0 {
		return nil, invalid("meta: unknown flags %#x", h.Flags)
	}
	if h.NVMA > maxVMAs || h.NReloc > maxRelocs || h.NFD > maxFDs || h.XStateLen > maxXState || h.NThread > maxThreads ||
		h.NTimer > maxTimers || h.NSignal > maxSignals {
		return nil, invalid("meta: table sizes %d VMAs, %d relocations, %d fds, %d bytes of xstate, %d threads, %d timers, %d signals exceed the limits",
			h.NVMA, h.NReloc, h.NFD, h.XStateLen, h.NThread, h.NTimer, h.NSignal)
	}
	if h.MainTID < 1 || h.MainTID >= pidMaxLimit {
		return nil, invalid("meta: main thread tid %d out of range", h.MainTID)
	}
	if uint64(r.Len()) < uint64(h.NThread)*uint64(h.XStateLen+uint32(binary.Size(threadRecord{}))) {
		return nil, invalid("meta: %d bytes left for %d thread records", r.Len(), h.NThread)
	}
	if h.PagesSize != pagesSize {
		return nil, invalid("meta: pages.img should be %d bytes, it is %d", h.PagesSize, pagesSize)
	}
	img.VMAs = make([]VMA, h.NVMA)
	img.Relocs = make([]Reloc, h.NReloc)
	img.FDs = make([]FD, h.NFD)
	img.XState = make([]byte, h.XStateLen)
	recs := make([]threadRecord, h.NThread)
	for _, p := range []any{img.VMAs, img.Relocs, img.FDs, img.XState, recs} {
		if err := binary.Read(r, binary.LittleEndian, p); err != nil {
			return nil, invalid("meta: tables: %v", err)
		}
	}
	for i, rec := range recs {
		st, err := rec.state(i)
		if err != nil {
			return nil, err
		}
		st.XState = make([]byte, h.XStateLen)
		if _, err := io.ReadFull(r, st.XState); err != nil {
			return nil, invalid("meta: xstate of thread %d: %v", st.NSTID, err)
		}
		img.Threads = append(img.Threads, st)
	}
	if uint64(r.Len()) < uint64(h.NTimer)*uint64(binary.Size(Timer{}))+uint64(h.NSignal)*uint64(binary.Size(Signal{})) {
		return nil, invalid("meta: %d bytes left for %d timers and %d signals", r.Len(), h.NTimer, h.NSignal)
	}
	img.Timers = make([]Timer, h.NTimer)
	img.Signals = make([]Signal, h.NSignal)
	for _, p := range []any{img.Timers, img.Signals} {
		if err := binary.Read(r, binary.LittleEndian, p); err != nil {
			return nil, invalid("meta: timers and signals: %v", err)
		}
	}
	if err := checkTimersSignals(img); err != nil {
		return nil, err
	}
	if r.Len() != 0 {
		return nil, invalid("meta: %d trailing bytes", r.Len())
	}
	bs, err := decodePlan(plan)
	if err != nil {
		return nil, err
	}
	if err := validate(img, bs); err != nil {
		return nil, err
	}
	img.plans = bs
	return img, nil
}

func encodeMeta(h metaHeader, vmas []VMA, relocs []Reloc, fds []FD, xstate []byte, threads []ptrace.ThreadState, timers []Timer, signals []Signal) []byte {
	h.Magic, h.Version = metaMagic, FormatVersion
	h.NVMA, h.NReloc, h.NFD, h.XStateLen = uint32(len(vmas)), uint32(len(relocs)), uint32(len(fds)), uint32(len(xstate))
	h.NThread, h.NTimer, h.NSignal = uint32(len(threads)), uint32(len(timers)), uint32(len(signals))
	recs := make([]threadRecord, len(threads))
	for i, st := range threads {
		recs[i] = recordOf(st)
	}
	var buf bytes.Buffer
	for _, p := range []any{&h, vmas, relocs, fds, xstate, recs} {
		binary.Write(&buf, binary.LittleEndian, p)
	}
	for _, st := range threads {
		buf.Write(st.XState)
	}
	binary.Write(&buf, binary.LittleEndian, timers)
	binary.Write(&buf, binary.LittleEndian, signals)
	return buf.Bytes()
}

// recordOf is st as a thread record.
func recordOf(st ptrace.ThreadState) threadRecord {
	r := threadRecord{TID: uint32(st.NSTID), SigMask: st.SigMask, TIDAddress: st.TIDAddress, Robust: st.Robust,
		RSeq: st.RSeq, AltStack: st.AltStack, Caps: st.Caps, Regs: st.Regs}
	copy(r.Comm[:15], st.Comm)
	return r
}

// Linux's bound on pids (PID_MAX_LIMIT on 64-bit).
const (
	pidMaxLimit   = 1 << 22
	robustHeadLen = 24 // sizeof(struct robust_list_head)
)

// state checks thread record i on its own (decode checks the records
// against each other and the plan) and returns it as a ThreadState
// without xstate.
func (r threadRecord) state(i int) (ptrace.ThreadState, error) {
	bad := func(why string, a ...any) error {
		return invalid("thread record %d (tid %d): %s", i, r.TID, fmt.Sprintf(why, a...))
	}
	c := r.Caps
	switch {
	case r.Flags != 0:
		return ptrace.ThreadState{}, bad("unknown flags %#x", r.Flags)
	case r.TID < 1 || r.TID >= pidMaxLimit:
		return ptrace.ThreadState{}, bad("tid out of range")
	case r.Comm[15] != 0:
		return ptrace.ThreadState{}, bad("name not NUL-terminated")
	case r.RSeq.Flags != 0 || (r.RSeq.Ptr != 0 && (r.RSeq.Ptr%32 != 0 || r.RSeq.Size < 32 || r.RSeq.Ptr >= taskSize)):
		return ptrace.ThreadState{}, bad("rseq registration %+v", r.RSeq)
	case r.Robust[0] != 0 && (r.Robust[1] != robustHeadLen || r.Robust[0] >= taskSize):
		return ptrace.ThreadState{}, bad("robust list %#x+%d", r.Robust[0], r.Robust[1])
	case ptrace.StackTFlagsOf(r.AltStack)&^(ptrace.SSOnstack|ptrace.SSDisable|ptrace.SSAutodisarm) != 0:
		return ptrace.ThreadState{}, bad("sigaltstack flags %#x", ptrace.StackTFlagsOf(r.AltStack))
	case c.Effective&^c.Permitted != 0 || c.Ambient&^(c.Permitted&c.Inheritable) != 0:
		return ptrace.ThreadState{}, bad("capabilities %+v are not a set a thread can have", c)
	case r.Regs.Rip >= taskSize || r.Regs.Rsp >= taskSize || r.Regs.Fs_base >= taskSize || r.Regs.Gs_base >= taskSize || r.TIDAddress >= taskSize:
		return ptrace.ThreadState{}, bad("registers or clear_child_tid outside the user address space")
	}
	return ptrace.ThreadState{NSTID: int(r.TID), Regs: r.Regs, SigMask: r.SigMask, AltStack: r.AltStack,
		TIDAddress: r.TIDAddress, Robust: r.Robust, RSeq: r.RSeq, Comm: cstring(r.Comm[:]), Caps: c}, nil
}

type wsHeader struct {
	Magic   [8]byte
	Version uint32
	Count   uint32
}

func parseWS(b []byte, pagesSize uint64) ([]Range, error) {
	r := bytes.NewReader(b)
	var h wsHeader
	if err := binary.Read(r, binary.LittleEndian, &h); err != nil {
		return nil, invalid("ws: %v", err)
	}
	if h.Magic != wsMagic || h.Version != FormatVersion || h.Count > maxWSRanges {
		return nil, invalid("ws: bad header")
	}
	rs := make([]Range, h.Count)
	if err := binary.Read(r, binary.LittleEndian, rs); err != nil {
		return nil, invalid("ws: %v", err)
	}
	if r.Len() != 0 {
		return nil, invalid("ws: %d bytes after %d ranges", r.Len(), h.Count)
	}
	var last uint64
	for i, x := range rs {
		if x.Off%pageSize != 0 || x.Len%pageSize != 0 || x.Len == 0 || x.Off+x.Len < x.Off || x.Off+x.Len > pagesSize || (i > 0 && x.Off < last) {
			return nil, invalid("ws: range %d [%#x, +%#x) is not sorted, aligned and inside pages.img", i, x.Off, x.Len)
		}
		last = x.Off + x.Len
	}
	return rs, nil
}

func encodeWS(rs []Range) []byte {
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, wsHeader{wsMagic, FormatVersion, uint32(len(rs))})
	binary.Write(&buf, binary.LittleEndian, rs)
	return buf.Bytes()
}
