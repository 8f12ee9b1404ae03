package image

import (
	"encoding/binary"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// compiled is a restore plan under construction.
type compiled struct {
	// b is the batch being written, the plan's last; done are the ones
	// before it (a plan whose memory does not fit one batch).
	b       *ptrace.Batch
	done    []*ptrace.Batch
	hdr     metaHeader
	vmas    []VMA
	relocs  []Reloc
	fds     []FD
	threads []ptrace.ThreadState // the thread records, in the order of the plan's clone3 entries
	timers  []Timer
	signals []Signal
}

// fdTable simulates the restorer's descriptor table while the plan is
// compiled: after close_range every number the plan's open/pipe2 get is
// the lowest free one, so it is known ahead of time.
type fdTable map[int]bool

func (t fdTable) lowest() int {
	for i := 0; ; i++ {
		if !t[i] {
			return i
		}
	}
}

func (t fdTable) alloc() int { n := t.lowest(); t[n] = true; return n }

func u64s(v ...uint64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], x)
	}
	return b
}

const (
	protRead  = 0x1
	protWrite = 0x2
	protExec  = 0x4
)

// protOf is the mmap protection of maps' permissions.
func protOf(p procfs.Perms) uint32 {
	var prot uint32
	if p.Read {
		prot |= protRead
	}
	if p.Write {
		prot |= protWrite
	}
	if p.Exec {
		prot |= protExec
	}
	return prot
}

// mapCopied maps a VMA that grows down (the main thread's stack):
// anonymous and MAP_GROWSDOWN, as the kernel made it, so that it grows on demand below what was mapped at
// checkpoint (up to RLIMIT_STACK, which the plan restores later, and no
// closer than stack_guard_gap to the mapping below, which the kernel
// enforces on growth). A private mapping of pages.img cannot grow: a fault
// below it is a SIGSEGV, and a file mapping that grew would show the
// pages.img bytes below it. So the dumped pages are read in (pread), and
// the pages that were not present stay demand-zero. Without
// Options.CopyAnon the stack is the one anonymous VMA whose pages are copied rather than shared through the
// page cache; it is small and written at once anyway.
//
// With Options.CopyAnon every anonymous VMA with dumped pages is mapped
// so (without MAP_GROWSDOWN unless it grows down): anonymous memory, whose
// MADV_DONTNEED gives zeros.
func (c *compiled) mapCopied(v dumpVMA, pages ptrace.Ref) {
	b := c.b
	prot := protOf(v.Perms)
	if len(v.runs) > 0 {
		prot |= protWrite
	}
	flags := unix.MAP_PRIVATE | unix.MAP_FIXED | unix.MAP_ANONYMOUS
	if v.growsDown {
		flags |= unix.MAP_GROWSDOWN
	}
	b.Add(unix.SYS_MMAP, ptrace.Lit(int64(v.Start)), ptrace.Lit(int64(v.Len())), ptrace.Lit(int64(prot)),
		ptrace.Lit(int64(flags)), ptrace.Lit(-1), ptrace.Lit(0))
	for _, r := range v.runs {
		// Populated in one call first: pread would fault each page in
		// one by one (a trap each, dear on a paravirtualized guest).
		b.Add(unix.SYS_MADVISE, ptrace.Lit(int64(r[0])), ptrace.Lit(int64(r[1]-r[0])), ptrace.Lit(madvPopulateWrite)).With(ptrace.IgnoreError)
		b.Add(unix.SYS_PREAD64, pages.Result(), ptrace.Lit(int64(r[0])), ptrace.Lit(int64(r[1]-r[0])),
			ptrace.Lit(int64(v.pages+r[0]-v.Start)))
	}
	if prot != protOf(v.Perms) {
		b.Add(unix.SYS_MPROTECT, ptrace.Lit(int64(v.Start)), ptrace.Lit(int64(v.Len())), ptrace.Lit(int64(protOf(v.Perms))))
	}
}

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14).
const madvPopulateWrite = 23

// compile turns the collected state into the restore plan. The order of
// the plan, as it runs in the restorer:
//
//  1. move the restorer's vDSO ([vvar], [vvar_vclock], [vdso]) next to the
//     executor (sources are RelocVDSO relocations);
//  2. unmap everything else of the restorer; park the reconnect fds high
//     (RelocFD) and close every other descriptor;
//  3. open pages.img (RelocPagesPath) and the mapped files, map every VMA,
//     copy the CoW'ed pages of private file mappings (pread), set final
//     protections, madvise each VMA's advice (smaps VmFlags), close those fds;
//  4. move the vDSO to the image's addresses;
//  5. descriptors, the session (setsid, for a session leader), cwd, umask, personality, signal handlers, altstack,
//     mm fields (PR_SET_MM_MAP with auxv and exe), comm, clear_child_tid,
//     robust list, rseq, rlimits; the other threads (one clone3 each with
//     set_tid, ptrace.AddThreadClones: they start stopped, and Restore
//     gives each its state); credentials, signal mask, itimers.
func (s *state) compile(vmas []dumpVMA) (*compiled, error) {
	c := &compiled{b: ptrace.NewBatch(), timers: s.timers, signals: s.signals}
	p := &planner{s: s, c: c, b: c.b, fds: fdTable{}}
	if err := p.place(vmas); err != nil {
		return nil, err
	}
	p.parkVDSO(vmas)
	p.clearRestorer()
	p.mapMemory(vmas)
	p.homeVDSO(vmas)
	p.descriptors()
	p.attributes()
	sort.SliceStable(c.relocs, func(i, j int) bool { return c.relocs[i].Kind < c.relocs[j].Kind })
	return c, nil
}

// planner is compile's state while it writes the plan, step by step.
type planner struct {
	s   *state
	c   *compiled
	b   *ptrace.Batch
	fds fdTable // the restorer's descriptors as the plan leaves them

	execAddr, tempAddr, tempSize uint64 // the executor, the vDSO's waiting room
	vdsoLo                       uint64 // the image's vDSO block
	high, nReconnect             int    // reconnect fds parked at high, high+1, ...
}

// place picks the executor's address and the vDSO's waiting room, away
// from every image mapping, and fills the header.
func (p *planner) place(vmas []dumpVMA) error {
	var vdsoHi uint64
	for _, v := range vmas {
		if v.kind == VMAVDSO {
			if p.vdsoLo == 0 || v.Start < p.vdsoLo {
				p.vdsoLo = v.Start
			}
			if v.End > vdsoHi {
				vdsoHi = v.End
			}
		}
	}
	p.tempSize = vdsoHi - p.vdsoLo
	var err error
	p.execAddr, err = pickExecAddr(vmas, ptrace.ExecutorRegionSize+p.tempSize)
	if err != nil {
		return &UnsupportedError{p.s.pid, "address space", err.Error()}
	}
	p.tempAddr = p.execAddr + ptrace.ExecutorRegionSize
	p.c.hdr = metaHeader{ExecAddr: p.execAddr, TempAddr: p.tempAddr, TempSize: p.tempSize, VDSOBase: p.s.vdsoBase,
		Pid: uint32(p.s.pid), Regs: p.s.regs, MainTID: uint32(p.s.mainTID), SigMask: p.s.sigmask}
	copy(p.c.hdr.Kernel[:], kernelID())
	if p.tempSize > 0 && p.s.vdsoBase == 0 {
		return &UnsupportedError{p.s.pid, "vDSO", "no AT_SYSINFO_EHDR in auxv"}
	}
	return nil
}

// parkVDSO (step 1) moves the restorer's vDSO to the waiting room.
func (p *planner) parkVDSO(vmas []dumpVMA) {
	for _, v := range vmas {
		if v.kind != VMAVDSO {
			continue
		}
		r := p.b.Add(unix.SYS_MREMAP, ptrace.Lit(0), ptrace.Lit(int64(v.Len())), ptrace.Lit(int64(v.Len())),
			ptrace.Lit(unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED), ptrace.Lit(int64(p.tempAddr+v.Start-p.vdsoLo)))
		p.reloc(Reloc{Kind: RelocVDSO, Entry: uint32(r.Index()), Arg: 0, Value: v.Start - p.s.vdsoBase})
	}
}

// clearRestorer (step 2) unmaps the restorer's own mappings, parks the
// reconnect fds high (RelocFD) and closes every other descriptor.
func (p *planner) clearRestorer() {
	p.b.Add(unix.SYS_MUNMAP, ptrace.Lit(0), ptrace.Lit(int64(p.execAddr)))
	p.b.Add(unix.SYS_MUNMAP, ptrace.Lit(int64(p.tempAddr+p.tempSize)), ptrace.Lit(int64(taskSize-(p.tempAddr+p.tempSize))))
	sortFDs(p.s.fds)
	p.high, p.nReconnect = 100, 0
	for _, f := range p.s.fds {
		if f.fd+1 > p.high {
			p.high = f.fd + 1
		}
		if f.kind == FDReconnect {
			p.nReconnect++
		}
	}
	k := 0
	for _, f := range p.s.fds {
		if f.kind != FDReconnect {
			continue
		}
		r := p.b.Add(unix.SYS_DUP3, ptrace.Lit(0), ptrace.Lit(int64(p.high+k)), ptrace.Lit(0))
		p.reloc(Reloc{Kind: RelocFD, Entry: uint32(r.Index()), Arg: 0, Value: uint64(f.fd)})
		p.fds[p.high+k] = true
		k++
	}
	p.b.Add(unix.SYS_CLOSE_RANGE, ptrace.Lit(0), ptrace.Lit(int64(p.high-1)), ptrace.Lit(0))
	p.b.Add(unix.SYS_CLOSE_RANGE, ptrace.Lit(int64(p.high+p.nReconnect)), ptrace.Lit(-1), ptrace.Lit(0))

}

// mapMemory (step 3) opens pages.img and the mapped files, maps every
// VMA, copies the CoW'ed pages of private file mappings in, sets final
// protections and closes those fds.
func (p *planner) mapMemory(vmas []dumpVMA) {
	m := p.openMemFiles()
	for _, v := range vmas {
		if batchSize(p.b) > planBatchSplit && v.kind != VMAVDSO {
			// This batch is full: the rest of the memory goes on in a
			// batch of its own, which opens pages.img and the files
			// again (a result is a batch's own).
			p.closeMemFiles(m)
			p.c.done = append(p.c.done, p.b)
			p.c.b = ptrace.NewBatch()
			p.b = p.c.b
			m = p.openMemFiles()
		}
		vm := VMA{Start: v.Start, End: v.End, PagesOff: v.pages, Prot: protOf(v.Perms), Kind: v.kind}
		p.c.vmas = append(p.c.vmas, vm)
		switch v.kind {
		case VMAAnon:
			p.mapAnon(v, vm, m.pages)
		case VMAFilePriv, VMAFileShared:
			p.mapFile(v, vm, m)
		}
		if v.kind != VMAVDSO {
			for _, adv := range p.s.advice[v.Start] {
				p.b.Add(unix.SYS_MADVISE, ptrace.Lit(int64(v.Start)), ptrace.Lit(int64(v.Len())), ptrace.Lit(int64(adv)))
			}
		}
	}
	p.closeMemFiles(m)
}

// memFiles are the descriptors one batch of mapMemory maps from:
// pages.img (pages, at pagesFD) and the mapped files, each opened once
// per mode (files, by "mode:path"; fileFDs in the order opened).
type memFiles struct {
	pages   ptrace.Ref
	pagesFD int
	files   map[string]int
	fileFDs []int
}

// openMemFiles opens pages.img in the batch being written (its path a
// RelocPagesPath) and starts its table of mapped files.
func (p *planner) openMemFiles() *memFiles {
	path := p.b.Space(4096)
	pages := p.b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), path, ptrace.Lit(unix.O_RDONLY|unix.O_CLOEXEC))
	pathOff, _ := path.DataOffset()
	p.reloc(Reloc{Kind: RelocPagesPath, Batch: uint32(len(p.c.done)), Entry: uint32(pages.Index()), DataOff: uint32(pathOff), Value: 4096})
	return &memFiles{pages: pages, pagesFD: p.fds.alloc(), files: map[string]int{}}
}

// closeMemFiles closes what m opened: pages.img, then the files.
func (p *planner) closeMemFiles(m *memFiles) {
	p.b.Add(unix.SYS_CLOSE, m.pages.Result())
	delete(p.fds, m.pagesFD)
	for _, fd := range m.fileFDs {
		p.b.Add(unix.SYS_CLOSE, ptrace.Lit(int64(fd)))
		delete(p.fds, fd)
	}
}

// mapAnon maps v, an anonymous VMA: copied in (a stack, or every one
// when copyAnon), mapped privately from pages.img, or zero-filled when
// it has no pages.
func (p *planner) mapAnon(v dumpVMA, vm VMA, pages ptrace.Ref) {
	length := ptrace.Lit(int64(v.Len()))
	if v.growsDown || (p.s.copyAnon && v.pages != noPages) {
		p.c.mapCopied(v, pages)
	} else if v.pages != noPages {
		p.b.Add(unix.SYS_MMAP, ptrace.Lit(int64(v.Start)), length, ptrace.Lit(int64(vm.Prot)),
			ptrace.Lit(unix.MAP_PRIVATE|unix.MAP_FIXED), pages.Result(), ptrace.Lit(int64(v.pages)))
	} else {
		flags := unix.MAP_PRIVATE | unix.MAP_FIXED | unix.MAP_ANONYMOUS
		if vm.Prot&protWrite == 0 {
			flags |= unix.MAP_NORESERVE
		}
		p.b.Add(unix.SYS_MMAP, ptrace.Lit(int64(v.Start)), length, ptrace.Lit(int64(vm.Prot)),
			ptrace.Lit(int64(flags)), ptrace.Lit(-1), ptrace.Lit(0))
	}
}

// mapFile maps v, a file VMA, from its file (opened once per mode in m),
// writable while its CoW'ed pages are read in from pages.img.
func (p *planner) mapFile(v dumpVMA, vm VMA, m *memFiles) {
	length := ptrace.Lit(int64(v.Len()))
	mode := unix.O_RDONLY
	flags := unix.MAP_PRIVATE | unix.MAP_FIXED
	if v.kind == VMAFileShared {
		flags = unix.MAP_SHARED | unix.MAP_FIXED
		if v.Perms.Write || v.mayWrite {
			mode = unix.O_RDWR
		}
	}
	key := fmt.Sprintf("%d:%s", mode, v.Path)
	fd, ok := m.files[key]
	if !ok {
		p.b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), p.b.String(v.Path), ptrace.Lit(int64(mode|unix.O_CLOEXEC)))
		fd = p.fds.alloc()
		m.files[key] = fd
		m.fileFDs = append(m.fileFDs, fd)
	}
	prot := vm.Prot
	if len(v.runs) > 0 {
		prot |= protWrite
	}
	p.b.Add(unix.SYS_MMAP, ptrace.Lit(int64(v.Start)), length, ptrace.Lit(int64(prot)),
		ptrace.Lit(int64(flags)), ptrace.Lit(int64(fd)), ptrace.Lit(int64(v.Offset)))
	for _, r := range v.runs {
		p.b.Add(unix.SYS_PREAD64, m.pages.Result(), ptrace.Lit(int64(r[0])), ptrace.Lit(int64(r[1]-r[0])),
			ptrace.Lit(int64(v.pages+r[0]-v.Start)))
	}
	if prot != vm.Prot {
		p.b.Add(unix.SYS_MPROTECT, ptrace.Lit(int64(v.Start)), length, ptrace.Lit(int64(vm.Prot)))
	}
}

// planBatchSplit is the size past which mapMemory starts a new batch of
// the plan: below ptrace.MaxBatchSize by more than the rest of the plan
// (descriptors, attributes, thread clones) and one VMA's entries take.
const planBatchSplit = ptrace.MaxBatchSize / 2

// batchSize is b's encoded size.
func batchSize(b *ptrace.Batch) int { return 64 + 72*b.Len() + len(b.Data()) }

// homeVDSO (step 4) moves the vDSO to the image's addresses.
func (p *planner) homeVDSO(vmas []dumpVMA) {
	for _, v := range vmas {
		if v.kind == VMAVDSO {
			p.b.Add(unix.SYS_MREMAP, ptrace.Lit(int64(p.tempAddr+v.Start-p.vdsoLo)), ptrace.Lit(int64(v.Len())), ptrace.Lit(int64(v.Len())),
				ptrace.Lit(unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED), ptrace.Lit(int64(v.Start)))
		}
	}

}

// descriptors (step 5a) makes the image's descriptors, in increasing
// order, takes their locks and leases again (addLocks) and closes the
// parked reconnect fds.
func (p *planner) descriptors() {
	k := 0
	for _, f := range p.s.fds {
		cloexec := int64(0)
		if f.info.Flags&unix.O_CLOEXEC != 0 {
			cloexec = unix.O_CLOEXEC
		}
		p.c.fds = append(p.c.fds, FD{Fd: int32(f.fd), Kind: f.kind, Flags: f.info.Flags, Pos: f.info.Pos})
		switch f.kind {
		case FDReconnect:
			p.b.Add(unix.SYS_DUP3, ptrace.Lit(int64(p.high+k)), ptrace.Lit(int64(f.fd)), ptrace.Lit(cloexec))
			p.fds[f.fd] = true
			k++
		case FDFile:
			if f.dupOf >= 0 {
				// The lower fd's description, already in place.
				p.b.Add(unix.SYS_DUP3, ptrace.Lit(int64(f.dupOf)), ptrace.Lit(int64(f.fd)), ptrace.Lit(cloexec))
				p.fds[f.fd] = true
				continue
			}
			flags := int64(f.info.Flags) &^ (unix.O_CREAT | unix.O_TRUNC | unix.O_EXCL | unix.O_CLOEXEC | unix.O_NOCTTY)
			p.b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), p.b.String(f.link), ptrace.Lit(flags|unix.O_NOCTTY|cloexec))
			tmp := p.fds.alloc()
			if tmp != f.fd {
				p.b.Add(unix.SYS_DUP3, ptrace.Lit(int64(tmp)), ptrace.Lit(int64(f.fd)), ptrace.Lit(cloexec))
				p.b.Add(unix.SYS_CLOSE, ptrace.Lit(int64(tmp)))
				delete(p.fds, tmp)
				p.fds[f.fd] = true
			}
			if f.info.Pos != 0 {
				p.b.Add(unix.SYS_LSEEK, ptrace.Lit(int64(f.fd)), ptrace.Lit(f.info.Pos), ptrace.Lit(unix.SEEK_SET))
			}
		}
	}
	p.addLocks()
	if p.nReconnect > 0 {
		p.b.Add(unix.SYS_CLOSE_RANGE, ptrace.Lit(int64(p.high)), ptrace.Lit(int64(p.high+p.nReconnect-1)), ptrace.Lit(0))
		for i := 0; i < p.nReconnect; i++ {
			delete(p.fds, p.high+i)
		}
	}

}

// attributes (step 5b) restores cwd, umask, personality, signal handlers,
// altstack, the mm fields, comm, clear_child_tid, robust list, rseq,
// rlimits, the other threads, credentials, then the signal mask and
// timers.
func (p *planner) attributes() {
	p.processState()
	p.mmFields()
	p.threadRegistrations()
	for r := 0; r < numRlimits; r++ {
		l := p.s.rlimits[r]
		p.b.Add(unix.SYS_PRLIMIT64, ptrace.Lit(0), ptrace.Lit(int64(r)), p.b.Bytes(u64s(l.Cur, l.Max)), ptrace.Lit(0))
	}
	p.threadClones()
	// Timers take their own ids again (Restore makes them once the
	// threads have their masks): a switch that needs
	// CAP_CHECKPOINT_RESTORE, which the credentials drop.
	if len(p.s.timers) > 0 {
		p.b.Add(unix.SYS_PRCTL, ptrace.Lit(prTimerCreateRestoreIDs), ptrace.Lit(prTimerCreateRestoreIDsOn), ptrace.Lit(0), ptrace.Lit(0), ptrace.Lit(0))
	}
	// Credentials last: dropping them may drop the capabilities the
	// entries above need.
	p.setCredentials()
	p.addAttrs()
	p.maskAndTimers()
}

// processState restores the session, cwd, umask, personality, signal
// handlers and altstack.
func (p *planner) processState() {
	if p.s.sessionLeader {
		// The restorer leads no group: it is a child of its starter.
		p.b.Add(unix.SYS_SETSID)
	}
	p.b.Add(unix.SYS_CHDIR, p.b.String(p.s.cwd))
	if m, err := p.s.status.Uint("Umask", 8); err == nil {
		p.b.Add(unix.SYS_UMASK, ptrace.Lit(int64(m)))
	}
	p.b.Add(unix.SYS_PERSONALITY, ptrace.Lit(int64(p.s.persona)))
	for sig := 1; sig <= 64; sig++ {
		if p.s.hasAct[sig] {
			p.b.Add(unix.SYS_RT_SIGACTION, ptrace.Lit(int64(sig)), p.b.Bytes(p.s.sigact[sig][:]), ptrace.Lit(0), ptrace.Lit(8))
		}
	}
	if ss, ok := ptrace.AltStackRestore(p.s.altstack); ok {
		p.b.Add(unix.SYS_SIGALTSTACK, p.b.Bytes(ss), ptrace.Lit(0))
	}
}

// mmFields restores the mm fields in one PR_SET_MM_MAP: the layout from
// stat, brk, auxv (its pointer a RelocDataPtr) and the exe file, opened
// for the call.
func (p *planner) mmFields() {
	le := binary.LittleEndian
	st := func(n int) uint64 { v, _ := p.s.stat.Uint(n); return v }
	exeFD := int64(-1)
	if p.s.exe != "" {
		p.b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), p.b.String(p.s.exe), ptrace.Lit(unix.O_RDONLY|unix.O_CLOEXEC))
		exeFD = int64(p.fds.alloc())
	}
	mm := u64s(st(26), st(27), st(45), st(46), st(47), p.s.brk, st(28), st(48), st(49), st(50), st(51), 0, 0)
	le.PutUint32(mm[96:], uint32(len(p.s.auxv)))
	le.PutUint32(mm[100:], uint32(exeFD))
	mmArg := p.b.Bytes(mm)
	auxArg := p.b.Bytes(p.s.auxv)
	mmOff, _ := mmArg.DataOffset()
	auxOff, _ := auxArg.DataOffset()
	p.reloc(Reloc{Kind: RelocDataPtr, DataOff: uint32(mmOff + 88), Value: uint64(auxOff)})
	p.b.Add(unix.SYS_PRCTL, ptrace.Lit(prSetMM), ptrace.Lit(prSetMMMap), mmArg, ptrace.Lit(104), ptrace.Lit(0))
	if exeFD >= 0 {
		p.b.Add(unix.SYS_CLOSE, ptrace.Lit(exeFD))
		delete(p.fds, int(exeFD))
	}
}

// threadRegistrations restores what the main thread registered with the
// kernel: comm, clear_child_tid, robust list, rseq.
func (p *planner) threadRegistrations() {
	if p.s.comm != "" {
		p.b.Add(unix.SYS_PRCTL, ptrace.Lit(prSetName), p.b.String(p.s.comm))
	}
	p.b.Add(unix.SYS_SET_TID_ADDRESS, ptrace.Lit(int64(p.s.tidAddr)))
	if p.s.robust[0] != 0 {
		p.b.Add(unix.SYS_SET_ROBUST_LIST, ptrace.Lit(int64(p.s.robust[0])), ptrace.Lit(int64(p.s.robust[1])))
	}
	if p.s.rseq.Ptr != 0 {
		p.b.Add(unix.SYS_RSEQ, ptrace.Lit(int64(p.s.rseq.Ptr)), ptrace.Lit(int64(p.s.rseq.Size)), ptrace.Lit(0), ptrace.Lit(int64(p.s.rseq.Signature)))
	}
}

// threadClones re-creates the other threads, with the memory, files and
// attributes they share in place, and before the credentials drop the
// CAP_CHECKPOINT_RESTORE that set_tid needs. The set_tid pointer in each
// clone_args is the data area's address: a relocation.
func (p *planner) threadClones() {
	p.c.threads = p.s.threads
	for _, th := range ptrace.AddThreadClones(p.b, p.s.threads) {
		args, _ := th.Args.DataOffset()
		tid, _ := th.TID.DataOffset()
		p.reloc(Reloc{Kind: RelocDataPtr, DataOff: uint32(args + ptrace.CloneArgsSetTID), Value: uint64(tid)})
	}
}

// setCredentials sets the groups, gids and uids from status.
func (p *planner) setCredentials() {
	uid, _ := p.s.status.Uint("Uid", 10)
	gid, _ := p.s.status.Uint("Gid", 10)
	var groups []byte
	gs, _ := p.s.status.Uints("Groups", 10)
	for _, g := range gs {
		groups = binary.LittleEndian.AppendUint32(groups, uint32(g))
	}
	if len(groups) > 0 {
		p.b.Add(unix.SYS_SETGROUPS, ptrace.Lit(int64(len(groups)/4)), p.b.Bytes(groups))
	} else {
		p.b.Add(unix.SYS_SETGROUPS, ptrace.Lit(0), ptrace.Lit(0))
	}
	p.b.Add(unix.SYS_SETRESGID, ptrace.Lit(int64(gid)), ptrace.Lit(int64(gid)), ptrace.Lit(int64(gid)))
	p.b.Add(unix.SYS_SETRESUID, ptrace.Lit(int64(uid)), ptrace.Lit(int64(uid)), ptrace.Lit(int64(uid)))
}

// maskAndTimers sets the signal mask and the interval timers, at the very
// end of the plan: the timers start counting.
func (p *planner) maskAndTimers() {
	le := binary.LittleEndian
	p.b.Add(unix.SYS_RT_SIGPROCMASK, ptrace.Lit(unix.SIG_SETMASK), p.b.Bytes(u64s(p.s.sigmask)), ptrace.Lit(0), ptrace.Lit(8))
	for w := range p.s.itimers {
		it := p.s.itimers[w]
		if le.Uint64(it[16:]) != 0 || le.Uint64(it[24:]) != 0 {
			p.b.Add(unix.SYS_SETITIMER, ptrace.Lit(int64(w)), p.b.Bytes(it[:]), ptrace.Lit(0))
		}
	}
}

func kernelID() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return cstring(u.Release[:]) + " " + cstring(u.Version[:])
}

// reloc adds a relocation of the batch being written.
func (p *planner) reloc(r Reloc) {
	r.Batch = uint32(len(p.c.done))
	p.c.relocs = append(p.c.relocs, r)
}
