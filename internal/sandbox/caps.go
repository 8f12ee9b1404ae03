package sandbox

import (
	"fmt"
	"strings"
	"sync"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox/seccomp"
)

// Capabilities returns Docker's default capability set (names without the
// CAP_ prefix). It is what a sandbox keeps when Config.Caps is nil.
func Capabilities() []string {
	return []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW",
		"SETGID", "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT",
		"KILL", "AUDIT_WRITE"}
}

// CapMask returns the capability set names as a bit mask (bit n is
// capability n), for capset(2) done by injected code.
func CapMask(names []string) (uint64, error) {
	caps, err := parseCaps(names)
	if err != nil {
		return 0, err
	}
	var m uint64
	for _, c := range caps {
		m |= 1 << uint(c)
	}
	return m, nil
}

// parseCaps maps capability names to values; unknown names are ErrInvalid.
func parseCaps(names []string) ([]capability.Cap, error) {
	known := map[string]capability.Cap{}
	for _, c := range capability.ListKnown() {
		known[strings.ToUpper(c.String())] = c
	}
	out := make([]capability.Cap, 0, len(names))
	for _, n := range names {
		c, ok := known[strings.TrimPrefix(strings.ToUpper(n), "CAP_")]
		if !ok {
			return nil, fmt.Errorf("unknown capability %q: %w", n, errdefs.ErrInvalid)
		}
		out = append(out, c)
	}
	return out, nil
}

// seccompCache holds compiled default programs by capability set: the
// daemon compiles once, helpers only install.
var seccompCache sync.Map // string -> []unix.SockFilter

// SeccompProgram is the seccomp program every sandbox holding caps gets
// (Docker's default profile, compiled once per capability set): for a
// restored process, which installs it from an injected batch.
func SeccompProgram(caps []string) ([]unix.SockFilter, error) { return seccompProgram(caps) }

func seccompProgram(caps []string) ([]unix.SockFilter, error) {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = "CAP_" + trimCap(c)
	}
	key := strings.Join(names, ",")
	if p, ok := seccompCache.Load(key); ok {
		return p.([]unix.SockFilter), nil
	}
	prog, err := seccomp.DefaultProgram(seccomp.Options{Caps: names})
	if err != nil {
		return nil, err
	}
	seccompCache.Store(key, prog)
	return prog, nil
}

func trimCap(c string) string {
	if len(c) > 4 && (c[:4] == "CAP_" || c[:4] == "cap_") {
		c = c[4:]
	}
	b := []byte(c)
	for i := range b {
		if b[i] >= 'a' && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	return string(b)
}
