package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"github.com/catalyzer/catalyzer/internal/procfs"
)

// checkTree refuses a process that is not alone in its tree: one with
// children (zombies too), or that leads a process group or session with
// other processes in it. An image holds one process; a child would be
// left behind (wait() gets ECHILD after restore), and a group or session
// would be split. It records whether the process leads a session (restored
// with setsid) and refuses a group leader that leads no session: setpgid
// would put it in the restorer's session.
func (s *state) checkTree() error {
	pid := s.pid
	refuse := func(what, why string) error { return &UnsupportedError{pid, what, why} }
	self, err := procfs.Stat(pid)
	if err != nil {
		return err
	}
	pgrp, err1 := self.Int(5)
	sid, err2 := self.Int(6)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("checkpoint %d: %w", pid, err)
	}
	if pgrp == int64(pid) && sid != int64(pid) {
		return refuse("process group", "a process group leader that does not lead its session is not restored")
	}
	s.sessionLeader = sid == int64(pid)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("checkpoint %d: %w", pid, err)
	}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == pid {
			continue
		}
		st, err := procfs.Stat(n)
		if errors.Is(err, fs.ErrNotExist) {
			continue // gone meanwhile
		}
		if err != nil {
			return fmt.Errorf("checkpoint %d: %w", pid, err)
		}
		who := fmt.Sprintf("%d (%s)", n, st.Comm)
		if st.State == 'Z' {
			who = fmt.Sprintf("zombie %d (%s)", n, st.Comm)
		}
		for _, f := range []struct {
			field int
			what  string
		}{{4, "child " + who}, {5, "process group"}, {6, "session"}} {
			if v, err := st.Int(f.field); err == nil && v == int64(pid) {
				if f.field == 4 {
					return refuse(f.what, "child processes are not checkpointed (process trees are not)")
				}
				return refuse(f.what, fmt.Sprintf("it leads a %s with %s in it: only a process alone in its %s is checkpointed", f.what, who, f.what))
			}
		}
	}
	return nil
}
