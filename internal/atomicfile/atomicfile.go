// Package atomicfile writes files that readers and crashes see whole or
// not at all: the daemon's records, its API token, an image's manifest,
// the installed agents.
//
// WriteFile writes a temporary file in the target's directory (created
// mode 0600, so a secret is never readable by others, even for a moment),
// sets its mode, fsyncs it, renames it over the target and fsyncs the
// directory. A reader that opened the old file keeps reading the old
// bytes; after a crash the path holds the old file or the new one, and a
// stray temporary file at most (named ".<name>.tmp-*").
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data, mode perm, atomically and durably.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: sync dir: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync dir: %w", path, err)
	}
	return nil
}
