package image

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"

	"github.com/catalyzer/catalyzer/internal/kobj"
	"github.com/catalyzer/catalyzer/internal/procfs"
)

// Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, a shared mapping of
// /dev/zero) is checkpointed when the process alone maps it: every page
// of it is dumped and mapped privately from pages.img by the plan, then
// kobj's table (objects.bin) gives the process a fresh shared mapping with
// those bytes in its place, as it does for a fork. Memory another process
// maps too is refused: the restored copy would no longer be shared with it.

// checkShmemAlone refuses shared anonymous memory of the process that
// another process maps too (found by its inode in every /proc/N/maps).
func (s *state) checkShmemAlone() error {
	mine := map[string]procfs.Mapping{}
	for _, m := range s.vmas {
		if kobj.SharedAnon(m) {
			mine[m.Dev+":"+strconv.FormatUint(m.Inode, 10)] = m
		}
	}
	if len(mine) == 0 {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("checkpoint %d: %w", s.pid, err)
	}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == s.pid {
			continue
		}
		ms, err := procfs.Maps(n)
		if errors.Is(err, fs.ErrNotExist) {
			continue // gone meanwhile
		}
		if errors.Is(err, fs.ErrPermission) {
			// A process with capabilities we lack (ptrace access
			// denied). It can share the memory only as a fork, without
			// exec, of its creator: see docs/IMAGE.md's known limits.
			continue
		}
		if err != nil {
			return fmt.Errorf("checkpoint %d: who else maps its shared memory: %w", s.pid, err)
		}
		for _, o := range ms {
			if m, ok := mine[o.Dev+":"+strconv.FormatUint(o.Inode, 10)]; ok && kobj.SharedAnon(o) {
				return &UnsupportedError{s.pid, fmt.Sprintf("mapping %x-%x %s", m.Start, m.End, m.Path),
					fmt.Sprintf("shared anonymous memory that process %d maps too is not checkpointed", n)}
			}
		}
	}
	return nil
}

// placeScratch moves kobj's scratch range (where each shared mapping is
// built before it moves into place) into a hole of the restored address
// space: away from every VMA and from the restore's executor region and
// vDSO waiting room, which the live process did not have where they go.
func (s *state) placeScratch(vmas []dumpVMA, hdr metaHeader) error {
	var largest uint64
	for _, m := range s.objects.Memory {
		largest = max(largest, m.End-m.Start)
	}
	if largest == 0 {
		return nil
	}
	var exec dumpVMA
	exec.Start, exec.End = hdr.ExecAddr, hdr.TempAddr+hdr.TempSize
	taken := append(slices.Clone(vmas), exec)
	slices.SortFunc(taken, func(a, b dumpVMA) int { return cmp.Compare(a.Start, b.Start) })
	at, err := pickExecAddr(taken, largest)
	if err != nil {
		return &UnsupportedError{s.pid, "address space", "no room to rebuild shared memory: " + err.Error()}
	}
	s.objects.Scratch = at
	return nil
}
