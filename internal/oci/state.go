package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/catalyzer/catalyzer/internal/atomicfile"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
)

// stateVersion is the version of the state file's layout; a file of
// another version is refused (errdefs.ErrNotSupported), never guessed at.
const stateVersion = 1

// Files in a container's state directory, <root>/<id>.
const (
	stateFile = "state.json"
	fifoFile  = "exec.fifo" // the created init blocks writing it until start reads it
)

// record is what a container's state file holds: everything a later
// invocation of the runtime needs, since no process of ours stays between
// them (the container's init is the shim's child).
type record struct {
	Version     int               `json:"version"`
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Pid         int               `json:"pid"`
	PidStart    uint64            `json:"pid_start"` // /proc/PID/stat starttime: the pid is still ours
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	CgroupPath  string            `json:"cgroup_path"`
	Hooks       *specs.Hooks      `json:"hooks,omitempty"`
	Boot        BootSpec          `json:"boot"`
	// Monitor is the pid in --pid-file when it is not Pid (a forked or
	// restored container: see doc.go); 0 otherwise.
	Monitor int `json:"monitor,omitempty"`
	// RestoreCaps are the bundle's capabilities for a container restored
	// at start (dev.catalyzer.boot=restore): the restore bounds the
	// restored process by them.
	RestoreCaps *specs.LinuxCapabilities `json:"restore_caps,omitempty"`
	// Holder is a template's holder process (template.go), with its
	// start time; 0 for other containers.
	Holder      int    `json:"holder,omitempty"`
	HolderStart uint64 `json:"holder_start,omitempty"`
}

// Root is a runtime state root (runc's --root): one directory per
// container.
type Root struct{ Dir string }

func (r Root) dir(id string) string { return filepath.Join(r.Dir, id) }

// load reads container id's record; a missing container wraps
// errdefs.ErrNotFound with runc's words ("does not exist"), which
// containerd's shim looks for.
func (r Root) load(id string) (*record, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(r.dir(id), stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("container %s does not exist: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("container %s: read state: %w", id, err)
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("container %s: state file: %w: %w", id, err, errdefs.ErrInvalid)
	}
	if rec.Version != stateVersion {
		return nil, fmt.Errorf("container %s: state file version %d, this runtime reads %d: %w", id, rec.Version, stateVersion, errdefs.ErrNotSupported)
	}
	return &rec, nil
}

func (r Root) save(rec *record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(r.dir(rec.ID), stateFile), data, 0o600); err != nil {
		return fmt.Errorf("container %s: write state: %w", rec.ID, err)
	}
	return nil
}

// List returns the ids of the containers under the root.
func (r Root) List() ([]string, error) {
	ents, err := os.ReadDir(r.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(r.Dir, e.Name(), stateFile)); err == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// procStart is process pid's start time (clock ticks since boot) and
// whether it is alive (a zombie is not).
func procStart(pid int) (uint64, bool) {
	st, err := procfs.Stat(pid)
	if err != nil || st.Exited() {
		return 0, false
	}
	t, err := st.Uint(22)
	if err != nil {
		return 0, false
	}
	return t, true
}

// alive reports whether the record's process still runs: same pid, same
// start time (pids are recycled), not a zombie.
func (rec *record) alive() bool {
	if rec.Pid <= 0 {
		return false
	}
	t, ok := procStart(rec.Pid)
	return ok && t == rec.PidStart
}
