package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/sandbox/sandboxinit"
)

// Leftover is what a sweep could not remove: a mount point that stayed
// mounted or a directory that stayed, and why. Sweep and UnmountUnder
// return their leftovers joined in one error; a caller that must go on
// regardless (a daemon starting) logs them.
type Leftover struct {
	Path string
	Err  error
}

func (l *Leftover) Error() string { return fmt.Sprintf("left %s: %v", l.Path, l.Err) }
func (l *Leftover) Unwrap() error { return l.Err }

// sweepRounds bounds how often UnmountUnder re-reads mountinfo: each
// round unmounts every mount it sees, deepest first, so one round is the
// usual case; a mount that propagated back (shared subtrees) takes
// another.
const sweepRounds = 8

// UnmountUnder unmounts every mount at or below dir in the caller's mount
// namespace, as /proc/self/mountinfo lists them: deepest paths first, and
// each mount stacked on one path as often as it is stacked (three image
// layers on one directory are three mounts). A mount that is busy (a
// process still has a file or its cwd there) is detached lazily
// (MNT_DETACH): it leaves the tree at once, and the kernel frees it when
// its last user goes. It returns how many mounts it removed and, joined,
// a *Leftover for each path still mounted after every round.
func UnmountUnder(dir string) (int, error) {
	dir = filepath.Clean(dir)
	n := 0
	var last map[string]error
	for round := 0; round < sweepRounds; round++ {
		mps, err := sandboxinit.MountsUnder(dir)
		if err != nil {
			return n, fmt.Errorf("unmount under %s: %w", dir, err)
		}
		if len(mps) == 0 {
			return n, nil
		}
		// Deepest first; a path stacked k times appears k times, and each
		// unmount takes its topmost mount.
		sort.SliceStable(mps, func(i, j int) bool {
			return strings.Count(mps[i], "/") > strings.Count(mps[j], "/")
		})
		last = map[string]error{}
		progress := false
		for _, mp := range mps {
			err := unix.Unmount(mp, unix.UMOUNT_NOFOLLOW)
			if errors.Is(err, unix.EBUSY) {
				err = unix.Unmount(mp, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
			}
			if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				last[mp] = err
				continue
			}
			if err == nil {
				n++
				progress = true
			}
		}
		if !progress && round > 0 {
			break
		}
	}
	mps, err := sandboxinit.MountsUnder(dir)
	if err != nil {
		return n, fmt.Errorf("unmount under %s: %w", dir, err)
	}
	var errs []error
	seen := map[string]bool{}
	for _, mp := range mps {
		if seen[mp] {
			continue
		}
		seen[mp] = true
		why := last[mp]
		if why == nil {
			why = errors.New("still mounted")
		}
		errs = append(errs, &Leftover{Path: mp, Err: fmt.Errorf("unmount: %w", why)})
	}
	return n, errors.Join(errs...)
}

// sweepRunDir removes base (RunDir/<parent>) and everything under it:
// every mount first (UnmountUnder), then each entry's directory. It never
// removes anything that is still mounted, or lies under a mount. It
// returns how many entries it removed and a *Leftover for each one it
// could not.
func sweepRunDir(base string) (int, error) {
	if _, err := os.Lstat(base); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	_, uerr := UnmountUnder(base)
	stuck := map[string]bool{}
	if mps, err := sandboxinit.MountsUnder(base); err == nil {
		for _, mp := range mps {
			stuck[mp] = true
		}
	}
	under := func(p string) bool {
		for mp := range stuck {
			if mp == p || strings.HasPrefix(mp, p+"/") || strings.HasPrefix(p, mp+"/") {
				return true
			}
		}
		return false
	}
	ents, err := os.ReadDir(base)
	if err != nil {
		return 0, errors.Join(uerr, &Leftover{Path: base, Err: err})
	}
	errs := []error{uerr}
	n := 0
	for _, e := range ents {
		d := filepath.Join(base, e.Name())
		if under(d) {
			continue // reported by UnmountUnder
		}
		// Unmounted, so whatever is left in it is on the host's file
		// system: the empty upper/work/merged of an overlay that was
		// never mounted, a scratch dir.
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, &Leftover{Path: d, Err: err})
			continue
		}
		n++
	}
	err = errors.Join(errs...)
	if rerr := os.Remove(base); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		// Not empty because of what is reported already: say it once.
		err = &Leftover{Path: base, Err: rerr}
	}
	return n, err
}
