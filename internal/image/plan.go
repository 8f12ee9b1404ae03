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
	b      *ptrace.Batch
	hdr    metaHeader
	vmas   []VMA
	relocs []Reloc
	fds    []FD
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

// mapStack maps a VMA that grows down (the main thread's stack):
// anonymous and MAP_GROWSDOWN, as the kernel made it, so that it grows on demand below what was mapped at
// checkpoint (up to RLIMIT_STACK, which the plan restores later, and no
// closer than stack_guard_gap to the mapping below, which the kernel
// enforces on growth). A private mapping of pages.img cannot grow: a fault
// below it is a SIGSEGV, and a file mapping that grew would show the
// pages.img bytes below it. So the dumped pages are read in (pread), and
// the pages that were not present stay demand-zero. The stack is the one
// anonymous VMA whose pages are copied rather than shared through the
// page cache; it is small and written at once anyway.
func (c *compiled) mapStack(v dumpVMA, pages ptrace.Ref) {
	b := c.b
	prot := protOf(v.Perms)
	if len(v.runs) > 0 {
		prot |= protWrite
	}
	flags := unix.MAP_PRIVATE | unix.MAP_FIXED | unix.MAP_ANONYMOUS | unix.MAP_GROWSDOWN
	b.Add(unix.SYS_MMAP, ptrace.Lit(int64(v.Start)), ptrace.Lit(int64(v.Len())), ptrace.Lit(int64(prot)),
		ptrace.Lit(int64(flags)), ptrace.Lit(-1), ptrace.Lit(0))
	for _, r := range v.runs {
		b.Add(unix.SYS_PREAD64, pages.Result(), ptrace.Lit(int64(r[0])), ptrace.Lit(int64(r[1]-r[0])),
			ptrace.Lit(int64(v.pages+r[0]-v.Start)))
	}
	if prot != protOf(v.Perms) {
		b.Add(unix.SYS_MPROTECT, ptrace.Lit(int64(v.Start)), ptrace.Lit(int64(v.Len())), ptrace.Lit(int64(protOf(v.Perms))))
	}
}

// compile turns the collected state into the restore plan. The order of
// the plan, as it runs in the restorer:
//
//  1. move the restorer's vDSO ([vvar], [vvar_vclock], [vdso]) next to the
//     executor (sources are RelocVDSO relocations);
//  2. unmap everything else of the restorer; park the reconnect fds high
//     (RelocFD) and close every other descriptor;
//  3. open pages.img (RelocPagesPath) and the mapped files, map every VMA,
//     copy the CoW'ed pages of private file mappings (pread), set final
//     protections, close those fds;
//  4. move the vDSO to the image's addresses;
//  5. descriptors, cwd, umask, personality, signal handlers, altstack,
//     mask, mm fields (PR_SET_MM_MAP with auxv and exe), comm,
//     clear_child_tid, robust list, rseq, rlimits, credentials, itimers.
func (s *state) compile(vmas []dumpVMA) (*compiled, error) {
	c := &compiled{b: ptrace.NewBatch()}
	b := c.b
	le := binary.LittleEndian

	// VDSO block and executor placement.
	var vdsoLo, vdsoHi uint64
	for _, v := range vmas {
		if v.kind == VMAVDSO {
			if vdsoLo == 0 || v.Start < vdsoLo {
				vdsoLo = v.Start
			}
			if v.End > vdsoHi {
				vdsoHi = v.End
			}
		}
	}
	tempSize := vdsoHi - vdsoLo
	execAddr, err := pickExecAddr(vmas, ptrace.ExecutorRegionSize+tempSize)
	if err != nil {
		return nil, &UnsupportedError{s.pid, "address space", err.Error()}
	}
	tempAddr := execAddr + ptrace.ExecutorRegionSize
	c.hdr = metaHeader{ExecAddr: execAddr, TempAddr: tempAddr, TempSize: tempSize, VDSOBase: s.vdsoBase,
		Pid: uint32(s.pid), Regs: s.regs}
	copy(c.hdr.Kernel[:], kernelID())
	if tempSize > 0 && s.vdsoBase == 0 {
		return nil, &UnsupportedError{s.pid, "vDSO", "no AT_SYSINFO_EHDR in auxv"}
	}

	// 1. vDSO to the waiting room.
	for _, v := range vmas {
		if v.kind != VMAVDSO {
			continue
		}
		r := b.Add(unix.SYS_MREMAP, ptrace.Lit(0), ptrace.Lit(int64(v.Len())), ptrace.Lit(int64(v.Len())),
			ptrace.Lit(unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED), ptrace.Lit(int64(tempAddr+v.Start-vdsoLo)))
		c.relocs = append(c.relocs, Reloc{Kind: RelocVDSO, Entry: uint32(r.Index()), Arg: 0, Value: v.Start - s.vdsoBase})
	}
	// 2. The restorer's own mappings and fds.
	b.Add(unix.SYS_MUNMAP, ptrace.Lit(0), ptrace.Lit(int64(execAddr)))
	b.Add(unix.SYS_MUNMAP, ptrace.Lit(int64(tempAddr+tempSize)), ptrace.Lit(int64(taskSize-(tempAddr+tempSize))))
	sortFDs(s.fds)
	high := 100
	nReconnect := 0
	for _, f := range s.fds {
		if f.fd+1 > high {
			high = f.fd + 1
		}
		if f.kind == FDReconnect {
			nReconnect++
		}
	}
	fds := fdTable{}
	k := 0
	for _, f := range s.fds {
		if f.kind != FDReconnect {
			continue
		}
		r := b.Add(unix.SYS_DUP3, ptrace.Lit(0), ptrace.Lit(int64(high+k)), ptrace.Lit(0))
		c.relocs = append(c.relocs, Reloc{Kind: RelocFD, Entry: uint32(r.Index()), Arg: 0, Value: uint64(f.fd)})
		fds[high+k] = true
		k++
	}
	b.Add(unix.SYS_CLOSE_RANGE, ptrace.Lit(0), ptrace.Lit(int64(high-1)), ptrace.Lit(0))
	b.Add(unix.SYS_CLOSE_RANGE, ptrace.Lit(int64(high+nReconnect)), ptrace.Lit(-1), ptrace.Lit(0))

	// 3. Memory.
	path := b.Space(4096)
	pages := b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), path, ptrace.Lit(unix.O_RDONLY|unix.O_CLOEXEC))
	pathOff, _ := path.DataOffset()
	c.relocs = append(c.relocs, Reloc{Kind: RelocPagesPath, Entry: uint32(pages.Index()), DataOff: uint32(pathOff), Value: 4096})
	pagesFD := fds.alloc()
	files := map[string]int{}
	var fileFDs []int
	for _, v := range vmas {
		vm := VMA{Start: v.Start, End: v.End, PagesOff: v.pages, Prot: protOf(v.Perms), Kind: v.kind}
		c.vmas = append(c.vmas, vm)
		length := ptrace.Lit(int64(v.Len()))
		switch v.kind {
		case VMAAnon:
			if v.growsDown {
				c.mapStack(v, pages)
			} else if v.pages != noPages {
				b.Add(unix.SYS_MMAP, ptrace.Lit(int64(v.Start)), length, ptrace.Lit(int64(vm.Prot)),
					ptrace.Lit(unix.MAP_PRIVATE|unix.MAP_FIXED), pages.Result(), ptrace.Lit(int64(v.pages)))
			} else {
				flags := unix.MAP_PRIVATE | unix.MAP_FIXED | unix.MAP_ANONYMOUS
				if vm.Prot&protWrite == 0 {
					flags |= unix.MAP_NORESERVE
				}
				b.Add(unix.SYS_MMAP, ptrace.Lit(int64(v.Start)), length, ptrace.Lit(int64(vm.Prot)),
					ptrace.Lit(int64(flags)), ptrace.Lit(-1), ptrace.Lit(0))
			}
		case VMAFilePriv, VMAFileShared:
			mode := unix.O_RDONLY
			flags := unix.MAP_PRIVATE | unix.MAP_FIXED
			if v.kind == VMAFileShared {
				flags = unix.MAP_SHARED | unix.MAP_FIXED
				if v.Perms.Write {
					mode = unix.O_RDWR
				}
			}
			key := fmt.Sprintf("%d:%s", mode, v.Path)
			fd, ok := files[key]
			if !ok {
				b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), b.String(v.Path), ptrace.Lit(int64(mode|unix.O_CLOEXEC)))
				fd = fds.alloc()
				files[key] = fd
				fileFDs = append(fileFDs, fd)
			}
			prot := vm.Prot
			if len(v.runs) > 0 {
				prot |= protWrite
			}
			b.Add(unix.SYS_MMAP, ptrace.Lit(int64(v.Start)), length, ptrace.Lit(int64(prot)),
				ptrace.Lit(int64(flags)), ptrace.Lit(int64(fd)), ptrace.Lit(int64(v.Offset)))
			for _, r := range v.runs {
				b.Add(unix.SYS_PREAD64, pages.Result(), ptrace.Lit(int64(r[0])), ptrace.Lit(int64(r[1]-r[0])),
					ptrace.Lit(int64(v.pages+r[0]-v.Start)))
			}
			if prot != vm.Prot {
				b.Add(unix.SYS_MPROTECT, ptrace.Lit(int64(v.Start)), length, ptrace.Lit(int64(vm.Prot)))
			}
		}
	}
	b.Add(unix.SYS_CLOSE, pages.Result())
	delete(fds, pagesFD)
	for _, fd := range fileFDs {
		b.Add(unix.SYS_CLOSE, ptrace.Lit(int64(fd)))
		delete(fds, fd)
	}
	// 4. vDSO home.
	for _, v := range vmas {
		if v.kind == VMAVDSO {
			b.Add(unix.SYS_MREMAP, ptrace.Lit(int64(tempAddr+v.Start-vdsoLo)), ptrace.Lit(int64(v.Len())), ptrace.Lit(int64(v.Len())),
				ptrace.Lit(unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED), ptrace.Lit(int64(v.Start)))
		}
	}

	// 5a. Descriptors, in increasing order.
	scratch := high + nReconnect
	k = 0
	pipeDone := map[uint64]bool{}
	for _, f := range s.fds {
		cloexec := int64(0)
		if f.info.Flags&unix.O_CLOEXEC != 0 {
			cloexec = unix.O_CLOEXEC
		}
		c.fds = append(c.fds, FD{Fd: int32(f.fd), Kind: f.kind, Flags: f.info.Flags, Pos: f.info.Pos})
		switch f.kind {
		case FDReconnect:
			b.Add(unix.SYS_DUP3, ptrace.Lit(int64(high+k)), ptrace.Lit(int64(f.fd)), ptrace.Lit(cloexec))
			fds[f.fd] = true
			k++
		case FDFile:
			flags := int64(f.info.Flags) &^ (unix.O_CREAT | unix.O_TRUNC | unix.O_EXCL | unix.O_CLOEXEC | unix.O_NOCTTY)
			b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), b.String(f.link), ptrace.Lit(flags|unix.O_NOCTTY|cloexec))
			tmp := fds.alloc()
			if tmp != f.fd {
				b.Add(unix.SYS_DUP3, ptrace.Lit(int64(tmp)), ptrace.Lit(int64(f.fd)), ptrace.Lit(cloexec))
				b.Add(unix.SYS_CLOSE, ptrace.Lit(int64(tmp)))
				delete(fds, tmp)
				fds[f.fd] = true
			}
			if f.info.Pos != 0 {
				b.Add(unix.SYS_LSEEK, ptrace.Lit(int64(f.fd)), ptrace.Lit(f.info.Pos), ptrace.Lit(unix.SEEK_SET))
			}
		case FDPipe:
			if pipeDone[f.ino] {
				continue
			}
			pipeDone[f.ino] = true
			pfds := b.Space(8)
			b.Add(unix.SYS_PIPE2, pfds, ptrace.Lit(0))
			r0, w0 := fds.alloc(), fds.alloc()
			b.Add(unix.SYS_DUP3, ptrace.Lit(int64(r0)), ptrace.Lit(int64(scratch)), ptrace.Lit(0))
			b.Add(unix.SYS_DUP3, ptrace.Lit(int64(w0)), ptrace.Lit(int64(scratch+1)), ptrace.Lit(0))
			b.Add(unix.SYS_CLOSE, ptrace.Lit(int64(r0)))
			b.Add(unix.SYS_CLOSE, ptrace.Lit(int64(w0)))
			delete(fds, r0)
			delete(fds, w0)
			if f.pipeSz > 0 && f.pipeSz != 65536 {
				b.Add(unix.SYS_FCNTL, ptrace.Lit(int64(scratch)), ptrace.Lit(unix.F_SETPIPE_SZ), ptrace.Lit(int64(f.pipeSz)))
			}
			if len(f.data) > 0 {
				b.Add(unix.SYS_WRITE, ptrace.Lit(int64(scratch+1)), b.Bytes(f.data), ptrace.Lit(int64(len(f.data))))
			}
			for _, g := range s.fds {
				if g.kind != FDPipe || g.ino != f.ino {
					continue
				}
				src := scratch
				if g.write {
					src = scratch + 1
				}
				ce := int64(0)
				if g.info.Flags&unix.O_CLOEXEC != 0 {
					ce = unix.O_CLOEXEC
				}
				b.Add(unix.SYS_DUP3, ptrace.Lit(int64(src)), ptrace.Lit(int64(g.fd)), ptrace.Lit(ce))
				if fl := g.info.Flags & (unix.O_NONBLOCK | unix.O_DIRECT); fl != 0 {
					b.Add(unix.SYS_FCNTL, ptrace.Lit(int64(g.fd)), ptrace.Lit(unix.F_SETFL), ptrace.Lit(int64(fl)))
				}
				fds[g.fd] = true
			}
			b.Add(unix.SYS_CLOSE, ptrace.Lit(int64(scratch)))
			b.Add(unix.SYS_CLOSE, ptrace.Lit(int64(scratch+1)))
		}
	}
	if nReconnect > 0 {
		b.Add(unix.SYS_CLOSE_RANGE, ptrace.Lit(int64(high)), ptrace.Lit(int64(high+nReconnect-1)), ptrace.Lit(0))
		for i := 0; i < nReconnect; i++ {
			delete(fds, high+i)
		}
	}

	// 5b. Process attributes.
	b.Add(unix.SYS_CHDIR, b.String(s.cwd))
	if m, err := s.status.Uint("Umask", 8); err == nil {
		b.Add(unix.SYS_UMASK, ptrace.Lit(int64(m)))
	}
	b.Add(unix.SYS_PERSONALITY, ptrace.Lit(int64(s.persona)))
	for sig := 1; sig <= 64; sig++ {
		if s.hasAct[sig] {
			b.Add(unix.SYS_RT_SIGACTION, ptrace.Lit(int64(sig)), b.Bytes(s.sigact[sig][:]), ptrace.Lit(0), ptrace.Lit(8))
		}
	}
	if flags := int32(le.Uint32(s.altstack[8:])); flags&ssDisable == 0 {
		ss := s.altstack
		le.PutUint32(ss[8:], uint32(flags&^ssOnstack))
		b.Add(unix.SYS_SIGALTSTACK, b.Bytes(ss[:]), ptrace.Lit(0))
	}

	// mm fields.
	st := func(n int) uint64 { v, _ := s.stat.Uint(n); return v }
	exeFD := int64(-1)
	if s.exe != "" {
		b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), b.String(s.exe), ptrace.Lit(unix.O_RDONLY|unix.O_CLOEXEC))
		exeFD = int64(fds.alloc())
	}
	mm := u64s(st(26), st(27), st(45), st(46), st(47), s.brk, st(28), st(48), st(49), st(50), st(51), 0, 0)
	le.PutUint32(mm[96:], uint32(len(s.auxv)))
	le.PutUint32(mm[100:], uint32(exeFD))
	mmArg := b.Bytes(mm)
	auxArg := b.Bytes(s.auxv)
	mmOff, _ := mmArg.DataOffset()
	auxOff, _ := auxArg.DataOffset()
	c.relocs = append(c.relocs, Reloc{Kind: RelocDataPtr, DataOff: uint32(mmOff + 88), Value: uint64(auxOff)})
	b.Add(unix.SYS_PRCTL, ptrace.Lit(prSetMM), ptrace.Lit(prSetMMMap), mmArg, ptrace.Lit(104), ptrace.Lit(0))
	if exeFD >= 0 {
		b.Add(unix.SYS_CLOSE, ptrace.Lit(exeFD))
		delete(fds, int(exeFD))
	}
	if s.comm != "" {
		b.Add(unix.SYS_PRCTL, ptrace.Lit(prSetName), b.String(s.comm))
	}
	b.Add(unix.SYS_SET_TID_ADDRESS, ptrace.Lit(int64(s.tidAddr)))
	if s.robust[0] != 0 {
		b.Add(unix.SYS_SET_ROBUST_LIST, ptrace.Lit(int64(s.robust[0])), ptrace.Lit(int64(s.robust[1])))
	}
	if s.rseq.Ptr != 0 {
		b.Add(unix.SYS_RSEQ, ptrace.Lit(int64(s.rseq.Ptr)), ptrace.Lit(int64(s.rseq.Size)), ptrace.Lit(0), ptrace.Lit(int64(s.rseq.Signature)))
	}
	for r := 0; r < numRlimits; r++ {
		l := s.rlimits[r]
		b.Add(unix.SYS_PRLIMIT64, ptrace.Lit(0), ptrace.Lit(int64(r)), b.Bytes(u64s(l.Cur, l.Max)), ptrace.Lit(0))
	}
	// Credentials last: dropping them may drop the capabilities the
	// entries above need.
	uid, _ := s.status.Uint("Uid", 10)
	gid, _ := s.status.Uint("Gid", 10)
	var groups []byte
	gs, _ := s.status.Uints("Groups", 10)
	for _, g := range gs {
		groups = binary.LittleEndian.AppendUint32(groups, uint32(g))
	}
	if len(groups) > 0 {
		b.Add(unix.SYS_SETGROUPS, ptrace.Lit(int64(len(groups)/4)), b.Bytes(groups))
	} else {
		b.Add(unix.SYS_SETGROUPS, ptrace.Lit(0), ptrace.Lit(0))
	}
	b.Add(unix.SYS_SETRESGID, ptrace.Lit(int64(gid)), ptrace.Lit(int64(gid)), ptrace.Lit(int64(gid)))
	b.Add(unix.SYS_SETRESUID, ptrace.Lit(int64(uid)), ptrace.Lit(int64(uid)), ptrace.Lit(int64(uid)))
	// Signal mask and timers at the very end (the timers start counting).
	b.Add(unix.SYS_RT_SIGPROCMASK, ptrace.Lit(unix.SIG_SETMASK), b.Bytes(u64s(s.sigmask)), ptrace.Lit(0), ptrace.Lit(8))
	for w := range s.itimers {
		it := s.itimers[w]
		if le.Uint64(it[16:]) != 0 || le.Uint64(it[24:]) != 0 {
			b.Add(unix.SYS_SETITIMER, ptrace.Lit(int64(w)), b.Bytes(it[:]), ptrace.Lit(0))
		}
	}
	sort.SliceStable(c.relocs, func(i, j int) bool { return c.relocs[i].Kind < c.relocs[j].Kind })
	return c, nil
}

func kernelID() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return cstring(u.Release[:]) + " " + cstring(u.Version[:])
}

const (
	ssOnstack = 1
	ssDisable = 2
)
