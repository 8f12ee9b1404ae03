// Package filecopy copies bytes into a file that must not exist yet: the
// one way the image's layer capture and the sandbox's default root copy
// a regular file. It does not fsync (a copy that a crash cuts short is
// made again from its source: both callers rebuild from scratch) and
// leaves ownership, xattrs and times to the caller.
package filecopy

import (
	"io"
	"os"
)

// ToNew creates dst with perm (O_EXCL: an existing dst is an error) and
// copies src into it. On error dst may exist, partly written.
func ToNew(dst string, src io.Reader, perm os.FileMode) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
