package procfs

import (
	"fmt"
	pathpkg "path"
	"strconv"
	"strings"
)

// Mount is one line of /proc/PID/mountinfo (proc(5)).
type Mount struct {
	ID, Parent int
	Dev        string // "major:minor" in decimal
	Root       string // the root of the mount within its filesystem
	MountPoint string // relative to the reading process's root
	Options    string // per-mount options: "rw,nosuid,relatime"
	// Optional are the optional fields: "shared:1", "master:2",
	// "propagate_from:3", "unbindable".
	Optional     []string
	FSType       string // "ext4", "fuse.sshfs", ...
	Source       string // "/dev/sda1", "tmpfs", "none", ...
	SuperOptions string // per-superblock options
}

// Under reports whether m is mounted at dir or below it (dir an absolute
// path; it is cleaned first).
func (m Mount) Under(dir string) bool {
	dir = pathpkg.Clean(dir)
	return m.MountPoint == dir || strings.HasPrefix(m.MountPoint, strings.TrimSuffix(dir, "/")+"/")
}

// String formats m as a line of mountinfo; ParseMountInfo reads it back.
func (m Mount) String() string {
	f := []string{strconv.Itoa(m.ID), strconv.Itoa(m.Parent), m.Dev,
		escapeMount(m.Root), escapeMount(m.MountPoint), m.Options}
	f = append(f, m.Optional...)
	f = append(f, "-", escapeMount(m.FSType), escapeMount(m.Source), m.SuperOptions)
	return strings.Join(f, " ")
}

// Mounts reads /proc/PID/mountinfo: the mounts of pid's mount namespace,
// in mount order (a mount after its parent), as pid sees them. Mounts(Self)
// reads the caller's. See the package doc for its errors.
func Mounts(pid int) ([]Mount, error) {
	return readLive(pid, "mountinfo", ParseMountInfo)
}

// MountPointsUnder lists the mount points at or below dir (Mount.Under)
// in pid's mount namespace, parents first (mountinfo's order), a point
// stacked k times k times.
func MountPointsUnder(pid int, dir string) ([]string, error) {
	ms, err := Mounts(pid)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.Under(dir) {
			out = append(out, m.MountPoint)
		}
	}
	return out, nil
}

// ParseMountInfo parses the text of /proc/PID/mountinfo, one Mount a line:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// The octal escapes the kernel writes for space, tab, newline and
// backslash (`\040`) in the root, mount point, type and source are
// undone. A line that does not have that form is an error wrapping
// ErrFormat.
func ParseMountInfo(b []byte) ([]Mount, error) {
	return parseLines(b, parseMount)
}

func parseMount(line string) (Mount, error) {
	var m Mount
	f := strings.Split(line, " ")
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || len(f) != sep+4 {
		return m, parseError("not 6 fields, optional ones, \"-\" and 3 more")
	}
	for i, x := range f {
		if x == "" && i != sep+2 { // a mount's source may be "" (mount(2) with an empty one)
			return m, parseError("an empty field")
		}
	}
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil || m.ID < 0 || strconv.Itoa(m.ID) != f[0] {
		return m, parseError("bad mount id")
	}
	if m.Parent, err = strconv.Atoi(f[1]); err != nil || m.Parent < 0 || strconv.Itoa(m.Parent) != f[1] {
		return m, parseError("bad parent id")
	}
	maj, min, ok := strings.Cut(f[2], ":")
	if _, err1 := strconv.ParseUint(maj, 10, 32); !ok || err1 != nil {
		return m, parseError("bad dev")
	}
	if _, err2 := strconv.ParseUint(min, 10, 32); err2 != nil {
		return m, parseError("bad dev")
	}
	m.Dev = f[2]
	m.Root, m.MountPoint, m.Options = unescapeMount(f[3]), unescapeMount(f[4]), f[5]
	if sep > 6 {
		m.Optional = f[6:sep]
	}
	m.FSType, m.Source, m.SuperOptions = unescapeMount(f[sep+1]), unescapeMount(f[sep+2]), f[sep+3]
	return m, nil
}

// unescapeMount undoes the kernel's octal escapes (`\040` for a space);
// a backslash not followed by three octal digits of a byte stays as it is.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if c, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil && isOctal(s[i+1:i+4]) {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}

// escapeMount escapes s as the kernel does in mountinfo: space, tab,
// newline and backslash as three octal digits.
func escapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
