package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox/sandboxinit"
)

// MaskedPaths and ReadonlyPaths are runc's defaults: every sandbox gets
// /dev/null (files) or an empty read-only tmpfs (directories) over each
// masked path that exists, and a read-only bind over each read-only path.
// Start applies them after pivot_root; an Env applies the /sys entries
// and leaves /proc to the process that joins it, which must apply the
// /proc entries over the proc it mounts (the sfork batch does).
var (
	MaskedPaths = []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"}
	ReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// MountCall is one mount(2) call, as data: what a process that joins an
// Env (a forked instance, from an injected batch) must still do itself.
type MountCall struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
	// Optional calls may fail (a path this kernel lacks).
	Optional bool
}

// ProcMounts is what a process that joined an Env does to get the /proc
// of Start: a fresh proc for its own PID namespace, then runc's masked
// and read-only paths under /proc, decided from the host's /proc (same
// kernel, same entries) exactly as Start's helper decides from its own.
func ProcMounts() []MountCall {
	calls := []MountCall{{Source: "proc", Target: "/proc", FSType: "proc",
		Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC}}
	for _, p := range MaskedPaths {
		if !strings.HasPrefix(p, "/proc/") {
			continue
		}
		st, err := os.Lstat(p)
		switch {
		case err != nil:
		case st.IsDir():
			calls = append(calls, MountCall{Source: "tmpfs", Target: p, FSType: "tmpfs", Flags: unix.MS_RDONLY, Data: "size=0", Optional: true})
		default:
			calls = append(calls, MountCall{Source: "/dev/null", Target: p, Flags: unix.MS_BIND, Optional: true})
		}
	}
	for _, p := range ReadonlyPaths {
		if _, err := os.Lstat(p); err != nil || !strings.HasPrefix(p, "/proc/") {
			continue
		}
		calls = append(calls,
			MountCall{Source: p, Target: p, Flags: unix.MS_BIND | unix.MS_REC, Optional: true},
			MountCall{Target: p, Flags: unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RELATIME, Optional: true})
	}
	return calls
}

// LayerTmpfs is a tmpfs the daemon mounts for an extra lower layer: overlayfs
// refuses a lower layer that lies on the same file system as another
// layer below it (ELOOP, "overlapping layers"), which any directory under
// the host's "/" does when "/" is the bottom layer. The caller copies the
// layer in; Release unmounts it; Sweep removes what a killed daemon left.
type LayerTmpfs struct{ Dir string }

// NewLayerTmpfs mounts a tmpfs of size bytes at RunDir/<parent>/<name>.
func NewLayerTmpfs(parent, name string, size int64) (*LayerTmpfs, error) {
	if parent == "" {
		parent = DefaultCgroupParent
	}
	if !idRE.MatchString(name) {
		return nil, fmt.Errorf("scratch %q: bad name: %w", name, errdefs.ErrInvalid)
	}
	dir := filepath.Join(RunDir, parent, name)
	if err := mkRunParent(filepath.Dir(dir)); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("scratch %s: %w", dir, err)
	}
	return &LayerTmpfs{Dir: dir}, nil
}

// Release unmounts the scratch tmpfs (lazily: envs built on it keep their
// copy) and removes its directory.
func (s *LayerTmpfs) Release() error {
	sandboxinit.UnmountOverlay(s.Dir)
	return os.Remove(s.Dir)
}
