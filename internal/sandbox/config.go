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
	Rootfs       string // "" = the embedded default root (defaultroot.go); else a directory
	Binds        []Bind
	Hostname     string // default: ID
	Network      Network
	UserNS       bool          // map root inside to UIDBase.. outside
	UIDBase      int           // with UserNS: first host uid/gid of the range (0 = UIDMapBase)
	Template     bool          // a template for sfork: CAP_SYS_ADMIN kept in bounding+permitted, upper layer host-visible (see doc.go)
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
	var err error
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
	if cfg.Rootfs, cfg.Binds, err = rootfsWithDefault(cfg.Rootfs, cfg.Binds); err != nil {
		return Config{}, err
	}
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.ID
	}
	if cfg.Network, err = checkNetwork(cfg.Network); err != nil {
		return Config{}, err
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = DefaultCgroupParent
	}
	if cfg.UserNS {
		if cfg.UIDBase == 0 {
			cfg.UIDBase = UIDMapBase
		}
		if cfg.UIDBase < 0 || cfg.UIDBase > 1<<31-UIDMapSize {
			return bad("uid base %d out of range", cfg.UIDBase)
		}
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

// rootfsWithDefault validates a config's root and binds; an empty root is
// the embedded default root (defaultroot.go), whose system directory
// binds come first.
func rootfsWithDefault(rootfs string, binds []Bind) (string, []Bind, error) {
	var err error
	if rootfs == "" {
		def, err := defaultRootfs()
		if err != nil {
			return "", nil, err
		}
		rootfs, binds = def.dir, append(append([]Bind{}, def.binds...), binds...)
	} else if rootfs, err = checkLayer("rootfs", rootfs); err != nil {
		return "", nil, err
	}
	if err := checkBinds(binds); err != nil {
		return "", nil, err
	}
	return rootfs, binds, nil
}

// checkLayer validates an overlay layer directory and returns its absolute
// path.
func checkLayer(what, dir string) (string, error) {
	bad := func(f string, a ...any) (string, error) {
		return "", fmt.Errorf("sandbox config: "+f+": %w", append(a, errdefs.ErrInvalid)...)
	}
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return bad("%s %q is not a directory", what, dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return bad("%s %q: %v", what, dir, err)
	}
	if strings.ContainsAny(abs, ",:\\") {
		return bad("%s %q: ',', ':' and '\\' are not allowed in overlay layer paths", what, abs)
	}
	return abs, nil
}

func checkBinds(binds []Bind) error {
	for _, b := range binds {
		if !filepath.IsAbs(b.Source) || !filepath.IsAbs(b.Target) || filepath.Clean(b.Target) == "/" {
			return fmt.Errorf("sandbox config: bind %q -> %q: paths must be absolute, target not /: %w", b.Source, b.Target, errdefs.ErrInvalid)
		}
		if _, err := os.Stat(b.Source); err != nil {
			return fmt.Errorf("sandbox config: bind source %q: %v: %w", b.Source, err, errdefs.ErrInvalid)
		}
	}
	return nil
}

func checkNetwork(n Network) (Network, error) {
	switch n {
	case "":
		return NetworkNone, nil
	case NetworkNone, NetworkHost:
		return n, nil
	}
	return "", fmt.Errorf("sandbox config: network %q (want %q or %q): %w", n, NetworkNone, NetworkHost, errdefs.ErrInvalid)
}

// EnvConfig describes a pre-built sandbox env (see Env). The zero values
// of optional fields select the same defaults as Config.
type EnvConfig struct {
	ID           string   // [a-z0-9-]{1,64}; names the cgroup and the run dir (and the instance adopted into it)
	Lowers       []string // extra read-only lower layers above Rootfs, topmost first (e.g. a template's UpperDir)
	Rootfs       string   // "" = the embedded default root
	Binds        []Bind
	Hostname     string // default: ID
	Network      Network
	Limits       cgroup.Limits
	CgroupParent string // default DefaultCgroupParent
	UpperBytes   int64  // size of the overlay upper tmpfs; default DefaultUpperBytes
	// UserNS, if set, is the user namespace that owns the env's
	// namespaces (its template's): the holder joins it before making
	// them, and root in it owns the env's upper layer.
	UserNS *UserNS
}

func (cfg EnvConfig) withDefaults() (EnvConfig, error) {
	var err error
	if !idRE.MatchString(cfg.ID) {
		return EnvConfig{}, fmt.Errorf("sandbox env config: id %q must match %s: %w", cfg.ID, idRE, errdefs.ErrInvalid)
	}
	lowers := make([]string, len(cfg.Lowers))
	for i, l := range cfg.Lowers {
		if lowers[i], err = checkLayer("lower", l); err != nil {
			return EnvConfig{}, err
		}
	}
	cfg.Lowers = lowers
	if cfg.Rootfs, cfg.Binds, err = rootfsWithDefault(cfg.Rootfs, cfg.Binds); err != nil {
		return EnvConfig{}, err
	}
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.ID
	}
	if cfg.Network, err = checkNetwork(cfg.Network); err != nil {
		return EnvConfig{}, err
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = DefaultCgroupParent
	}
	if cfg.UpperBytes <= 0 {
		cfg.UpperBytes = DefaultUpperBytes
	}
	return cfg, nil
}
