package image

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// Validate re-checks an opened image (Open already did): the tables of
// meta.bin and every entry of the plan against the allow-list below.
func Validate(img *Image) error {
	return validate(img, img.plans)
}

// allowed is the allow-list of syscalls a restore plan may contain.
// Anything else (execve, ptrace, clone, kill, mount, ...) is refused.
var allowed = map[uint32]bool{
	unix.SYS_MMAP: true, unix.SYS_MUNMAP: true, unix.SYS_MREMAP: true, unix.SYS_MPROTECT: true,
	unix.SYS_MADVISE: true, unix.SYS_PREAD64: true, unix.SYS_OPENAT: true, unix.SYS_CLOSE: true,
	unix.SYS_CLOSE_RANGE: true, unix.SYS_DUP3: true, unix.SYS_FCNTL: true, unix.SYS_LSEEK: true,
	unix.SYS_RT_SIGACTION:   true,
	unix.SYS_RT_SIGPROCMASK: true, unix.SYS_SIGALTSTACK: true, unix.SYS_PRCTL: true,
	unix.SYS_SET_TID_ADDRESS: true, unix.SYS_SET_ROBUST_LIST: true, unix.SYS_RSEQ: true,
	unix.SYS_PRLIMIT64: true, unix.SYS_CHDIR: true, unix.SYS_PERSONALITY: true,
	unix.SYS_UMASK: true, unix.SYS_SETITIMER: true, unix.SYS_SETGROUPS: true,
	unix.SYS_SETRESUID: true, unix.SYS_SETRESGID: true, unix.SYS_SETSID: true, unix.SYS_MEMBARRIER: true,
	unix.SYS_FLOCK:  true,
	unix.SYS_CLONE3: true, // threads only: validateThreads
}

const (
	prSetMM    = 35
	prSetMMMap = 14
	prSetName  = 15
	oTmpfile   = 0o20000000
)

// validate checks an image's tables and plan, in steps: the header and
// VMAs (layout), the relocations, then every plan entry against the
// allow-list and the rules of its syscall (entry).
//
// A plan of several batches (a process whose memory does not fit one) is
// checked batch by batch with the same rules: each relocation applies to
// its own batch, each batch opens pages.img once at most (its own
// pages path), a VMA is mapped once in the whole plan, and the thread
// clones are in the last batch only.
func validate(img *Image, bs []*ptrace.Batch) error {
	if len(bs) == 0 {
		return invalid("no plan")
	}
	mapped := map[int]bool{}
	c := &planCheck{img: img, h: &img.hdr, mapped: mapped}
	if err := c.layout(); err != nil {
		return err
	}
	for i, r := range img.Relocs {
		if int(r.Batch) >= len(bs) {
			return invalid("relocation %d: batch %d of a plan of %d", i, r.Batch, len(bs))
		}
	}
	for k, b := range bs {
		var relocs []Reloc
		for _, r := range img.Relocs {
			if int(r.Batch) == k {
				relocs = append(relocs, r)
			}
		}
		c := &planCheck{img: img, h: &img.hdr, ents: b.Entries(), data: b.Data(), pagesEntry: -1, mapped: mapped, relocTable: relocs}
		last := k == len(bs)-1
		if last {
			if err := validateThreads(img, b, relocs); err != nil {
				return err
			}
		} else if slices.ContainsFunc(b.Entries(), func(e ptrace.Entry) bool { return e.Nr == unix.SYS_CLONE3 }) {
			return invalid("plan batch %d of %d: a clone3 outside the last batch", k, len(bs))
		}
		if err := c.relocs(); err != nil {
			return fmt.Errorf("plan batch %d: %w", k, err)
		}
		for i, e := range c.ents {
			if err := c.entry(i, e); err != nil {
				return fmt.Errorf("plan batch %d: %w", k, err)
			}
		}
	}
	return nil
}

// planCheck is validate's state.
type planCheck struct {
	img        *Image
	h          *metaHeader
	ents       []ptrace.Entry
	data       []byte
	pagesEntry int          // the openat of pages.img, -1 before relocs
	mapped     map[int]bool // VMAs an mmap entry maps (in the whole plan)
	relocTable []Reloc      // the relocations of this batch
}

// hits reports whether [lo, hi) touches the executor region or the
// vDSO's waiting room.
func (c *planCheck) hits(lo, hi uint64) bool {
	return lo < c.h.TempAddr+c.h.TempSize && c.h.ExecAddr < hi
}

// vmaAt is the VMA holding [lo, hi), or -1.
func (c *planCheck) vmaAt(lo, hi uint64) int {
	vs := c.img.VMAs
	i := sort.Search(len(vs), func(i int) bool { return vs[i].End > lo })
	if i < len(vs) && vs[i].Start <= lo && hi <= vs[i].End && lo < hi {
		return i
	}
	return -1
}

func (c *planCheck) isPagesFD(e ptrace.Entry, k int) bool {
	return (e.Reloc>>(2*k))&3 == ptrace.RelocResult && int(e.Args[k]) == c.pagesEntry && c.pagesEntry >= 0
}

func lit(e ptrace.Entry, k int) bool { return (e.Reloc>>(2*k))&3 == ptrace.RelocLit }

// layout checks the executor region and the VMAs: sorted, disjoint,
// page-aligned, canonical, away from the executor, their pages.img
// regions inside it and not shared.
func (c *planCheck) layout() error {
	h := c.h
	if h.ExecAddr%pageSize != 0 || h.ExecAddr < 1<<16 || h.TempAddr != h.ExecAddr+ptrace.ExecutorRegionSize ||
		h.TempSize%pageSize != 0 || h.TempSize > 1<<20 || h.TempAddr+h.TempSize > taskSize {
		return invalid("meta: executor region %#x / vDSO area %#x+%#x is not canonical", h.ExecAddr, h.TempAddr, h.TempSize)
	}
	type span struct{ off, end uint64 }
	var regions []span
	for i, v := range c.img.VMAs {
		if v.Start%pageSize != 0 || v.End%pageSize != 0 || v.Start >= v.End || v.End > taskSize || v.Start < 1<<16 {
			return invalid("VMA %d [%#x, %#x) is not a canonical page-aligned range", i, v.Start, v.End)
		}
		if i > 0 && v.Start < c.img.VMAs[i-1].End {
			return invalid("VMA %d [%#x, %#x) overlaps or precedes VMA %d", i, v.Start, v.End, i-1)
		}
		if c.hits(v.Start, v.End) {
			return invalid("VMA %d [%#x, %#x) overlaps the executor region", i, v.Start, v.End)
		}
		if v.Kind < VMAAnon || v.Kind > VMAVDSO || v.Prot&^7 != 0 {
			return invalid("VMA %d: kind %d, prot %#x", i, v.Kind, v.Prot)
		}
		if v.PagesOff != noPages {
			if v.PagesOff%pageSize != 0 || v.PagesOff+(v.End-v.Start) < v.PagesOff || v.PagesOff+(v.End-v.Start) > h.PagesSize {
				return invalid("VMA %d: pages at %#x+%#x outside pages.img (%d bytes)", i, v.PagesOff, v.End-v.Start, h.PagesSize)
			}
			regions = append(regions, span{v.PagesOff, v.PagesOff + v.End - v.Start})
		}
	}
	sort.Slice(regions, func(i, j int) bool { return regions[i].off < regions[j].off })
	for i := 1; i < len(regions); i++ {
		if regions[i].off < regions[i-1].end {
			return invalid("two VMAs share pages.img bytes at %#x", regions[i].off)
		}
	}
	return nil
}

// relocs checks each relocation's target and finds the pages.img openat.
func (c *planCheck) relocs() error {
	ents, data := c.ents, c.data
	for i, r := range c.relocTable {
		switch r.Kind {
		case RelocVDSO, RelocFD:
			if int(r.Entry) >= len(ents) || r.Arg >= 6 || (ents[r.Entry].Reloc>>(2*r.Arg))&3 != ptrace.RelocLit {
				return invalid("relocation %d: entry %d argument %d is not a literal of the plan", i, r.Entry, r.Arg)
			}
		case RelocPagesPath:
			if r.Value < 2 || r.Value > 4096 || uint64(r.DataOff)+r.Value > uint64(len(data)) {
				return invalid("relocation %d: path buffer at data %d+%d outside the data area", i, r.DataOff, r.Value)
			}
			if int(r.Entry) >= len(ents) || ents[r.Entry].Nr != unix.SYS_OPENAT {
				return invalid("relocation %d: pages path not used by an openat", i)
			}
			if off, kind := ents[r.Entry].Args[1], (ents[r.Entry].Reloc>>2)&3; kind != ptrace.RelocData || off != uint64(r.DataOff) {
				return invalid("relocation %d: the openat does not open the pages path", i)
			}
			if c.pagesEntry >= 0 {
				return invalid("relocation %d: a second pages path", i)
			}
			c.pagesEntry = int(r.Entry)
		case RelocDataPtr:
			if r.DataOff%8 != 0 || uint64(r.DataOff)+8 > uint64(len(data)) || r.Value > uint64(len(data)) {
				return invalid("relocation %d: pointer at data %d to %d outside the data area", i, r.DataOff, r.Value)
			}
		default:
			return invalid("relocation %d: unknown kind %d", i, r.Kind)
		}
	}
	return nil
}

// entry checks plan entry i: allowed, and within its syscall's rules.
func (c *planCheck) entry(i int, e ptrace.Entry) error {
	if !allowed[e.Nr] {
		return invalid("plan entry %d: syscall %s is not allowed in a restore plan", i, ptrace.SyscallName(uintptr(e.Nr)))
	}
	var why string
	switch e.Nr {
	case unix.SYS_MMAP, unix.SYS_MPROTECT, unix.SYS_MADVISE, unix.SYS_PREAD64, unix.SYS_MUNMAP, unix.SYS_MREMAP:
		why = c.memoryEntry(e)
	case unix.SYS_OPENAT, unix.SYS_FCNTL, unix.SYS_FLOCK:
		why = c.fileEntry(i, e)
	default:
		why = c.processEntry(e)
	}
	if why != "" {
		return invalid("plan entry %d (%s): %s", i, ptrace.SyscallName(uintptr(e.Nr)), why)
	}
	return nil
}

// memoryEntry checks mmap, mprotect, madvise, pread64, munmap, mremap:
// each on the image's VMAs, pages.img or the vDSO's places only.
func (c *planCheck) memoryEntry(e ptrace.Entry) string {
	a, h := e.Args, c.h
	switch e.Nr {
	case unix.SYS_MMAP:
		if !lit(e, 0) || !lit(e, 1) || !lit(e, 2) || !lit(e, 3) || !lit(e, 5) {
			return "address, length, protection, flags and offset must be literals"
		}
		if a[3]&unix.MAP_FIXED == 0 {
			return "mapping without MAP_FIXED"
		}
		vi := c.vmaAt(a[0], a[0]+a[1])
		if vi < 0 || c.img.VMAs[vi].Start != a[0] || c.img.VMAs[vi].End != a[0]+a[1] {
			return "mapping is not one VMA of the image"
		}
		if c.mapped[vi] {
			return "VMA mapped twice (overlapping mappings)"
		}
		c.mapped[vi] = true
		if c.isPagesFD(e, 4) && (a[5] != c.img.VMAs[vi].PagesOff || a[5]+a[1] > h.PagesSize) {
			return "maps pages.img at an offset that is not its VMA's region"
		}
	case unix.SYS_MPROTECT, unix.SYS_MADVISE:
		if !lit(e, 0) || !lit(e, 1) || c.vmaAt(a[0], a[0]+a[1]) < 0 {
			return "range outside the image's VMAs"
		}
	case unix.SYS_PREAD64:
		if !c.isPagesFD(e, 0) || !lit(e, 1) || !lit(e, 2) || !lit(e, 3) {
			return "reads other than from pages.img into a literal address"
		}
		if c.vmaAt(a[1], a[1]+a[2]) < 0 || a[3]%pageSize != 0 || a[3]+a[2] < a[3] || a[3]+a[2] > h.PagesSize {
			return "range outside the image's VMAs or pages.img"
		}
	case unix.SYS_MUNMAP:
		if !lit(e, 0) || !lit(e, 1) || a[0]+a[1] < a[0] || c.hits(a[0], a[0]+a[1]) {
			return "unmaps the executor region"
		}
	case unix.SYS_MREMAP:
		if !lit(e, 1) || !lit(e, 2) || !lit(e, 3) || !lit(e, 4) || a[1] != a[2] || a[3] != unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED {
			return "only same-size fixed moves are allowed"
		}
		dst := a[4]
		inTemp := dst >= h.TempAddr && dst+a[1] <= h.TempAddr+h.TempSize
		vi := c.vmaAt(dst, dst+a[1])
		if !inTemp && (vi < 0 || c.img.VMAs[vi].Kind != VMAVDSO) {
			return "moves a mapping elsewhere than the vDSO's places"
		}
	}
	return ""
}

// fileEntry checks openat (no creation, no /proc but pages.img), fcntl
// (duplicates, flags, pipe size, locks and leases) and flock.
func (c *planCheck) fileEntry(i int, e ptrace.Entry) string {
	a := e.Args
	switch e.Nr {
	case unix.SYS_OPENAT:
		if !lit(e, 0) || int32(a[0]) != unix.AT_FDCWD || (e.Reloc>>2)&3 != ptrace.RelocData || !lit(e, 2) {
			return "open must be relative to the cwd with a path in the data area"
		}
		if a[2]&(unix.O_CREAT|unix.O_TRUNC|oTmpfile) != 0 {
			return "creating or truncating files is not allowed"
		}
		if p := cstring(c.data[a[1]:]); strings.HasPrefix(p, "/proc/") && i != c.pagesEntry {
			return "opens " + p
		}
	case unix.SYS_FCNTL:
		if !lit(e, 1) {
			return "command must be a literal"
		}
		switch a[1] {
		case unix.F_DUPFD, unix.F_DUPFD_CLOEXEC, unix.F_SETFD, unix.F_SETFL, unix.F_SETPIPE_SZ:
		case unix.F_SETLEASE:
			if !lit(e, 2) || (a[2] != unix.F_RDLCK && a[2] != unix.F_WRLCK) {
				return "a lease must be F_RDLCK or F_WRLCK"
			}
		case unix.F_SETLK, unix.F_OFD_SETLK:
			if (e.Reloc>>4)&3 != ptrace.RelocData || a[2]+32 > uint64(len(c.data)) {
				return "a lock's struct flock must be in the data area"
			}
		default:
			return "fcntl command not allowed"
		}
	case unix.SYS_FLOCK:
		if !lit(e, 1) || (a[1] != unix.LOCK_SH|unix.LOCK_NB && a[1] != unix.LOCK_EX|unix.LOCK_NB) {
			return "only non-blocking LOCK_SH and LOCK_EX are allowed"
		}
	}
	return ""
}

// processEntry checks the process-wide calls: prctl options, credentials,
// groups, rlimits.
func (c *planCheck) processEntry(e ptrace.Entry) string {
	a := e.Args
	switch e.Nr {
	case unix.SYS_PRCTL:
		if !lit(e, 0) || !(a[0] == prSetName || (a[0] == prSetMM && lit(e, 1) && a[1] == prSetMMMap) ||
			a[0] == prSetDumpable || a[0] == prSetChildSubreaper || a[0] == prSetTHPDisable ||
			(a[0] == prTimerCreateRestoreIDs && lit(e, 1) && a[1] == prTimerCreateRestoreIDsOn)) {
			return "only PR_SET_MM_MAP, PR_SET_NAME, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_THP_DISABLE and PR_TIMER_CREATE_RESTORE_IDS_ON are allowed"
		}
	case unix.SYS_SETRESUID, unix.SYS_SETRESGID:
		if !lit(e, 0) || !lit(e, 1) || !lit(e, 2) {
			return "ids must be literals"
		}
	case unix.SYS_SETGROUPS:
		// Restore replays it in every thread (Image.credentials).
		if !lit(e, 0) || a[0] > 65536 || !(lit(e, 1) && a[0] == 0 ||
			(e.Reloc>>2)&3 == ptrace.RelocData && a[1]+4*a[0] <= uint64(len(c.data))) {
			return "groups must be a literal count and a list in the data area"
		}
	case unix.SYS_PRLIMIT64:
		if !lit(e, 0) || a[0] != 0 || !lit(e, 3) || a[3] != 0 {
			return "only prlimit64(0, res, new, NULL) is allowed"
		}
	}
	return ""
}

// dataWriters are the allowed syscalls that write through a pointer
// argument: argument index and the most bytes they write there.
var dataWriters = map[uint32][2]int{
	unix.SYS_RT_SIGACTION:   {2, 32},
	unix.SYS_RT_SIGPROCMASK: {2, 8},
	unix.SYS_SIGALTSTACK:    {1, 24},
	unix.SYS_SETITIMER:      {2, 32},
}

// validateThreads checks the thread records against the plan: the plan's
// clone3 entries are exactly one per record, in order, each without
// flags, with the
// clone_args ptrace.ThreadCloneArgs makes of its record and a set_tid
// pointer (a RelocDataPtr, the only relocation that writes there) at a u32
// holding the record's tid; nothing else in the plan writes into those
// bytes. Records' tids are distinct and their xstate is the main
// thread's size.
func validateThreads(img *Image, b *ptrace.Batch, relocs []Reloc) error {
	ents, data := b.Entries(), b.Data()
	var guarded cloneSpans
	seen := map[int]bool{}
	k := 0
	for i, e := range ents {
		if e.Nr != unix.SYS_CLONE3 {
			continue
		}
		if k >= len(img.Threads) {
			return invalid("plan entry %d (clone3): %s", i, fmt.Sprintf("more clone3 entries than the %d thread records", len(img.Threads)))
		}
		st := img.Threads[k]
		k++
		tid, err := checkThreadClone(i, e, st, img, data, relocs, seen)
		if err != nil {
			return err
		}
		off := e.Args[0]
		guarded = append(guarded, span{off, off + ptrace.CloneArgsSize}, span{tid, tid + 4})
	}
	if k != len(img.Threads) {
		return invalid("plan re-creates %d threads, the image records %d", k, len(img.Threads))
	}
	return guarded.checkUntouched(ents, relocs)
}

// checkThreadClone checks plan entry i, e, the clone3 of thread record st
// (its tid not yet in seen, then added): its flags, its clone_args, its
// set_tid pointer's relocation and the tid it points at, its xstate's
// size. It returns the data offset of that tid.
func checkThreadClone(i int, e ptrace.Entry, st ptrace.ThreadState, img *Image, data []byte, relocs []Reloc, seen map[int]bool) (uint64, error) {
	bad := func(why string, a ...any) error {
		return invalid("plan entry %d (clone3): %s", i, fmt.Sprintf(why, a...))
	}
	off := e.Args[0]
	if e.Flags != 0 {
		return 0, bad("flags %#x (a thread's clone3 stops the plan on error, and is no fork point)", e.Flags)
	}
	if e.Reloc != ptrace.RelocData || e.Args[1] != ptrace.CloneArgsSize || off%8 != 0 || off+ptrace.CloneArgsSize > uint64(len(data)) {
		return 0, bad("its clone_args must be %d bytes of the data area", ptrace.CloneArgsSize)
	}
	if !bytes.Equal(data[off:off+ptrace.CloneArgsSize], ptrace.ThreadCloneArgs(st)) {
		return 0, bad("clone_args are not those that re-create thread %d", st.NSTID)
	}
	ptr := -1
	for j, r := range relocs {
		if r.Kind == RelocDataPtr && uint64(r.DataOff) == off+ptrace.CloneArgsSetTID {
			ptr = j
		}
	}
	if ptr < 0 {
		return 0, bad("no relocation sets its set_tid pointer")
	}
	tid := relocs[ptr].Value
	if tid%4 != 0 || tid+4 > uint64(len(data)) || binary.LittleEndian.Uint32(data[tid:]) != uint32(st.NSTID) {
		return 0, bad("set_tid does not point at thread %d's tid", st.NSTID)
	}
	if seen[st.NSTID] {
		return 0, bad("thread %d twice", st.NSTID)
	}
	seen[st.NSTID] = true
	if len(st.XState) != len(img.XState) {
		return 0, bad("thread %d has %d bytes of xstate, the main thread %d", st.NSTID, len(st.XState), len(img.XState))
	}
	return tid, nil
}

// span is [lo, hi) of a batch's data area.
type span struct{ lo, hi uint64 }

// cloneSpans are the bytes of the threads' clone_args and tids, which
// only their own clone3 entries and set_tid relocations may touch.
type cloneSpans []span

// hits reports whether [lo, hi) touches one of the spans.
func (g cloneSpans) hits(lo, hi uint64) bool {
	for _, s := range g {
		if lo < s.hi && s.lo < hi {
			return true
		}
	}
	return false
}

// checkUntouched refuses a relocation (other than a set_tid pointer) or
// an entry writing through a data pointer (dataWriters) into the spans.
func (g cloneSpans) checkUntouched(ents []ptrace.Entry, relocs []Reloc) error {
	for i, r := range relocs {
		var lo, hi uint64
		switch r.Kind {
		case RelocPagesPath:
			lo, hi = uint64(r.DataOff), uint64(r.DataOff)+r.Value
		case RelocDataPtr:
			lo, hi = uint64(r.DataOff), uint64(r.DataOff)+8
		default:
			continue
		}
		if g.hits(lo, hi) && !(r.Kind == RelocDataPtr && isSetTID(ents, uint64(r.DataOff))) {
			return invalid("relocation %d writes into a thread's clone_args", i)
		}
	}
	for i, e := range ents {
		w, ok := dataWriters[e.Nr]
		if ok && (e.Reloc>>(2*w[0]))&3 == ptrace.RelocData && g.hits(e.Args[w[0]], e.Args[w[0]]+uint64(w[1])) {
			return invalid("plan entry %d (%s) writes into a thread's clone_args", i, ptrace.SyscallName(uintptr(e.Nr)))
		}
	}
	return nil
}

// isSetTID reports whether data offset off is the set_tid pointer of a
// clone3 entry's clone_args.
func isSetTID(ents []ptrace.Entry, off uint64) bool {
	for _, e := range ents {
		if e.Nr == unix.SYS_CLONE3 && e.Reloc == ptrace.RelocData && e.Args[0]+ptrace.CloneArgsSetTID == off {
			return true
		}
	}
	return false
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}
