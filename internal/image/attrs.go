package image

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// Process and VMA attributes that zdtm showed were lost: the ones the plan
// restores (madvise flags, dumpable, child subreaper, THP disable,
// membarrier registrations) and the ones checkpoint refuses.

// madvFlags are the smaps VmFlags the plan restores with madvise, and
// their advice.
var madvFlags = map[string]int{
	"sr": unix.MADV_SEQUENTIAL, "rr": unix.MADV_RANDOM, "dc": unix.MADV_DONTFORK,
	"dd": unix.MADV_DONTDUMP, "mg": unix.MADV_MERGEABLE, "hg": unix.MADV_HUGEPAGE,
	"nh": unix.MADV_NOHUGEPAGE, "wf": unix.MADV_WIPEONFORK,
}

// refusedVMFlags are the VmFlags of memory the plan cannot give back.
var refusedVMFlags = map[string]string{
	"lo": "locked memory (mlock, MAP_LOCKED) is not restored",
	"ht": "hugetlb memory is not checkpointed",
	"dp": "droppable memory (MAP_DROPPABLE) is not checkpointed",
}

// readVMAFlags reads each VMA's VmFlags (smaps): the advice to restore,
// by VMA start, and a refusal of what cannot be.
func (s *state) readVMAFlags() error {
	es, err := procfs.Smaps(s.pid)
	if err != nil {
		return fmt.Errorf("checkpoint %d: %w", s.pid, err)
	}
	s.advice = map[uint64][]int{}
	s.mayWrite = map[uint64]bool{}
	for _, e := range es {
		if e.End > s.execLo && e.Start < s.execHi {
			continue // the executor, which is not dumped
		}
		if strings.HasPrefix(e.Path, "/") && !strings.HasSuffix(e.Path, " (deleted)") {
			what := fmt.Sprintf("mapping %x-%x %s", e.Start, e.End, e.Path)
			if err := s.checkFileIdentity(what, e.Path, mapDev(e.Dev), e.Inode); err != nil {
				return err
			}
		}
		s.mayWrite[e.Start] = e.HasFlag("mw")
		for _, f := range e.VMFlags {
			if why, ok := refusedVMFlags[f]; ok {
				return &UnsupportedError{s.pid, strings.TrimSpace(fmt.Sprintf("mapping %x-%x %s", e.Start, e.End, e.Path)), why}
			}
			if adv, ok := madvFlags[f]; ok {
				s.advice[e.Start] = append(s.advice[e.Start], adv)
			}
		}
	}
	return nil
}

// checkProcAttrs refuses what a restore would not give back: an
// oom_score_adj other than 0 (the restorer's), a loginuid other than the
// checkpointer's (the restorer inherits the restoring process's).
func (s *state) checkProcAttrs() error {
	read := func(pid, name string) string {
		b, _ := os.ReadFile("/proc/" + pid + "/" + name)
		return strings.TrimSpace(string(b))
	}
	pid := fmt.Sprint(s.pid)
	if v := read(pid, "oom_score_adj"); v != "0" {
		return &UnsupportedError{s.pid, "oom_score_adj", fmt.Sprintf("oom_score_adj %s is not restored (only 0 is)", v)}
	}
	if v, ours := read(pid, "loginuid"), read("self", "loginuid"); v != ours {
		return &UnsupportedError{s.pid, "loginuid", fmt.Sprintf("loginuid %s is not restored (the restore's is %s)", v, ours)}
	}
	return nil
}

// procAttrs are the per-process prctl and membarrier state that the
// query batch reads and the plan sets again.
type procAttrs struct {
	dumpable      uint64
	subreaper     bool
	thpDisable    bool
	membarrierReg uint64 // MEMBARRIER_CMD_GET_REGISTRATIONS: the REGISTER_* commands done
}

const (
	prGetDumpable       = 3
	prSetDumpable       = 4
	prSetChildSubreaper = 36
	prGetChildSubreaper = 37
	prSetTHPDisable     = 41
	prGetTHPDisable     = 42

	membarrierCmdGetRegistrations = 1 << 9
)

// queryAttrs adds the queries to the checkpoint's query batch; the
// returned function reads their results.
func queryAttrs(b *ptrace.Batch) func(*ptrace.Results) procAttrs {
	dump := b.Add(unix.SYS_PRCTL, ptrace.Lit(prGetDumpable))
	sub := b.Space(4)
	b.Add(unix.SYS_PRCTL, ptrace.Lit(prGetChildSubreaper), sub)
	thp := b.Add(unix.SYS_PRCTL, ptrace.Lit(prGetTHPDisable))
	// Linux 6.3+; an older kernel's EINVAL reads as no registrations.
	mb := b.Add(unix.SYS_MEMBARRIER, ptrace.Lit(membarrierCmdGetRegistrations), ptrace.Lit(0), ptrace.Lit(0)).With(ptrace.IgnoreError)
	return func(res *ptrace.Results) procAttrs {
		a := procAttrs{dumpable: uint64(res.Value(dump)), thpDisable: res.Value(thp) == 1}
		if d := res.Data(sub, 4); len(d) == 4 {
			a.subreaper = d[0] != 0 || d[1] != 0 || d[2] != 0 || d[3] != 0
		}
		if v := res.Value(mb); v > 0 {
			a.membarrierReg = uint64(v)
		}
		return a
	}
}

// addAttrs (end of step 5, after the credentials: a change of uid resets
// dumpable) sets the process attributes again.
func (p *planner) addAttrs() {
	a := p.s.attrs
	for bit := 0; bit < 32; bit++ {
		if a.membarrierReg&(1<<bit) != 0 {
			p.b.Add(unix.SYS_MEMBARRIER, ptrace.Lit(1<<bit), ptrace.Lit(0), ptrace.Lit(0))
		}
	}
	if a.subreaper {
		p.b.Add(unix.SYS_PRCTL, ptrace.Lit(prSetChildSubreaper), ptrace.Lit(1))
	}
	if a.thpDisable {
		p.b.Add(unix.SYS_PRCTL, ptrace.Lit(prSetTHPDisable), ptrace.Lit(1), ptrace.Lit(0), ptrace.Lit(0), ptrace.Lit(0))
	}
	p.b.Add(unix.SYS_PRCTL, ptrace.Lit(prSetDumpable), ptrace.Lit(int64(a.dumpable)))
}

// checkPlace refuses, for Checkpoint (a process the restore puts in the
// restorer's namespaces and cgroup, not a platform template, which its
// sandbox restores), a process in other namespaces or another cgroup than
// the checkpointer's: a host restore would move it silently.
func checkPlace(pid int) error {
	for _, ns := range []string{"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"} {
		theirs, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		ours, err2 := os.Readlink("/proc/self/ns/" + ns)
		if err1 != nil || err2 != nil {
			continue // a namespace this kernel lacks
		}
		if theirs != ours {
			return &UnsupportedError{pid, ns + " namespace", fmt.Sprintf("%s is not the checkpointer's %s: a restore would not put it back", theirs, ours)}
		}
	}
	theirs, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return fmt.Errorf("checkpoint %d: %w", pid, err)
	}
	if ours, err := os.ReadFile("/proc/self/cgroup"); err != nil || string(ours) != string(theirs) {
		return &UnsupportedError{pid, "cgroup", fmt.Sprintf("%s is not the checkpointer's: a restore would not put it back",
			strings.ReplaceAll(strings.TrimSpace(string(theirs)), "\n", "; "))}
	}
	return nil
}

// checkFileIdentity refuses a file (descriptor or mapping) whose path now
// names another file than the one the process holds (overmounted,
// replaced): the restore reopens it by path. Only for a process in our
// namespaces (samePlace): a template's paths are its sandbox's.
func (s *state) checkFileIdentity(what, path string, dev, ino uint64) error {
	if !s.samePlace {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Dev != dev || st.Ino != ino {
		return &UnsupportedError{s.pid, what, "its path names another file now (overmounted or replaced): the restore reopens by path"}
	}
	return nil
}

// mapDev is maps' "major:minor" (hex) as a dev_t.
func mapDev(s string) uint64 {
	maj, min, _ := strings.Cut(s, ":")
	a, _ := strconv.ParseUint(maj, 16, 32)
	b, _ := strconv.ParseUint(min, 16, 32)
	return unix.Mkdev(uint32(a), uint32(b))
}
