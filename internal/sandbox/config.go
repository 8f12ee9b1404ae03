package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
)

// Bind makes the host path Source visible at Target inside the sandbox,
// read-only unless Writable.
type Bind struct {
	Source, Target string
	Writable       bool
}

// Network selects the sandbox's network namespace.
type Network string

const (
	// NetworkNone (the default, also for "") gives the sandbox its own
	// network namespace holding only the loopback interface, up.
	NetworkNone Network = "none"
	// NetworkHost is an explicit opt-in: the sandbox shares the host's
	// network namespace (and sees the host's /sys, read-only).
	NetworkHost Network = "host"
)

// Rlimit is one resource limit set in the sandbox before exec.
// Resource is a unix.RLIMIT_* value.
type Rlimit struct {
	Resource   int
	Soft, Hard uint64
}

// DefaultRlimits are applied when Config.Rlimits is nil: 1024 open files
// (soft and hard), as Docker does for most distributions. Other limits are
// inherited from the daemon.
var DefaultRlimits = []Rlimit{{Resource: unix.RLIMIT_NOFILE, Soft: 1024, Hard: 1024}}

// UIDMapBase is the first host uid (and gid) that root inside a UserNS
// sandbox maps to; 65536 ids are mapped (0..65535 -> base..base+65535).
var UIDMapBase = 100000

// UIDMapSize is the number of ids mapped in a UserNS sandbox.
const UIDMapSize = 65536

// RunDir holds one directory per live instance (named by Config.ID): the
// mount point of the instance's tmpfs (overlay upper and work dirs) and of
// its overlay. Sweep removes what a killed daemon left there.
var RunDir = "/run/catalyzer/sandbox"

// DefaultCgroupParent is used when Config.CgroupParent is "".
const DefaultCgroupParent = "catalyzer"

// Sizes of the tmpfs mounts a sandbox gets (their pages are charged to the
// sandbox's memory cgroup when written).
const (
	DefaultUpperBytes = 64 << 20 // overlay upper layer: writes under /
	DefaultTmpBytes   = 64 << 20 // /tmp
	DefaultShmBytes   = 64 << 20 // /dev/shm, as Docker
)

// Config describes one sandbox. The zero values of optional fields select
// the documented defaults.
type Config struct {
	ID           string   // unique instance id, [a-z0-9-]{1,64}; names the cgroup and the run dir
	Argv         []string // Argv[0]: absolute path inside the sandbox
	Env          []string
	Cwd          string // default "/"
	Rootfs       string // "" = the host's "/" as the read-only lower layer; else a directory
	Binds        []Bind
	Hostname     string // default: ID
	Network      Network
	UserNS       bool          // map root inside to UIDMapBase.. outside
	Limits       cgroup.Limits // memory, pids, cpu
	CgroupParent string        // default DefaultCgroupParent
	Rlimits      []Rlimit      // nil = DefaultRlimits
	Caps         []string      // nil = Capabilities(); names as "CHOWN" or "CAP_CHOWN"; empty non-nil = none
	NoSeccomp    bool          // false: Docker's default profile is applied
	UpperBytes   int64         // size of the overlay upper tmpfs; default DefaultUpperBytes
	ExtraFiles   []*os.File    // become fds 3, 4, ... in the sandboxed process
	Stdout       *os.File      // nil: /dev/null
	Stderr       *os.File      // nil: /dev/null
}

// Capabilities returns Docker's default capability set (names without the
// CAP_ prefix). It is what a sandbox keeps when Config.Caps is nil.
func Capabilities() []string {
	return []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW",
		"SETGID", "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT",
		"KILL", "AUDIT_WRITE"}
}

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

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

// withDefaults validates cfg and returns a copy with defaults filled in.
func (cfg Config) withDefaults() (Config, error) {
	bad := func(f string, a ...any) (Config, error) {
		return Config{}, fmt.Errorf("sandbox config: "+f+": %w", append(a, errdefs.ErrInvalid)...)
	}
	if !idRE.MatchString(cfg.ID) {
		return bad("id %q must match %s", cfg.ID, idRE)
	}
	if len(cfg.Argv) == 0 || !filepath.IsAbs(cfg.Argv[0]) {
		return bad("argv[0] must be an absolute path, got %q", cfg.Argv)
	}
	if cfg.Cwd == "" {
		cfg.Cwd = "/"
	}
	if !filepath.IsAbs(cfg.Cwd) {
		return bad("cwd %q is not absolute", cfg.Cwd)
	}
	if cfg.Rootfs != "" {
		st, err := os.Stat(cfg.Rootfs)
		if err != nil || !st.IsDir() {
			return bad("rootfs %q is not a directory", cfg.Rootfs)
		}
		abs, err := filepath.Abs(cfg.Rootfs)
		if err != nil {
			return bad("rootfs %q: %v", cfg.Rootfs, err)
		}
		if strings.ContainsAny(abs, ",:\\") {
			return bad("rootfs %q: ',', ':' and '\\' are not allowed in overlay layer paths", abs)
		}
		cfg.Rootfs = abs
	}
	for _, b := range cfg.Binds {
		if !filepath.IsAbs(b.Source) || !filepath.IsAbs(b.Target) || filepath.Clean(b.Target) == "/" {
			return bad("bind %q -> %q: paths must be absolute, target not /", b.Source, b.Target)
		}
		if _, err := os.Stat(b.Source); err != nil {
			return bad("bind source %q: %v", b.Source, err)
		}
	}
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.ID
	}
	switch cfg.Network {
	case "":
		cfg.Network = NetworkNone
	case NetworkNone, NetworkHost:
	default:
		return bad("network %q (want %q or %q)", cfg.Network, NetworkNone, NetworkHost)
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = DefaultCgroupParent
	}
	if cfg.Rlimits == nil {
		cfg.Rlimits = DefaultRlimits
	}
	if cfg.Caps == nil {
		cfg.Caps = Capabilities()
	}
	if _, err := parseCaps(cfg.Caps); err != nil {
		return Config{}, fmt.Errorf("sandbox config: %w", err)
	}
	if cfg.UpperBytes <= 0 {
		cfg.UpperBytes = DefaultUpperBytes
	}
	return cfg, nil
}
