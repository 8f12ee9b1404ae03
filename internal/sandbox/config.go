package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
	"github.com/catalyzer/catalyzer/internal/sandbox/initwire"
)

// Bind makes the host path Source visible at Target inside the sandbox,
// read-only unless Writable.
type Bind = initwire.Bind

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
type Rlimit = initwire.Rlimit

// DefaultRlimits are applied when Config.Rlimits is nil: 1024 open files
// (soft and hard), as Docker does for most distributions. Other limits are
// inherited from the daemon.
var DefaultRlimits = []Rlimit{{Resource: unix.RLIMIT_NOFILE, Soft: 1024, Hard: 1024}}

// UIDMapBase is the first host uid (and gid) that root inside an OwnUserNS
// sandbox maps to; 65536 ids are mapped (0..65535 -> base..base+65535).
var UIDMapBase = 100000

// UIDMapSize is the number of ids mapped in an OwnUserNS sandbox.
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

// Config describes one sandbox started by Start: the env it gets (as for
// NewEnv, but built for this process alone, in a PID namespace of its
// own) and the process run in it. The zero values of optional fields
// select the documented defaults, the env's those of EnvConfig.
type Config struct {
	// EnvConfig is the env; its UserNS must be nil (Start makes a user
	// namespace of the sandbox's own: OwnUserNS).
	EnvConfig
	Process
	OwnUserNS bool // map root inside to UIDBase.. outside, in a user namespace of its own
	UIDBase   int  // with OwnUserNS: first host uid/gid of the range (0 = UIDMapBase)
	Template  bool // a template for sfork: CAP_SYS_ADMIN kept in bounding+permitted, upper layer host-visible (see doc.go)
}

// Process is the program a sandbox runs and its privileges.
type Process struct {
	Argv       []string // Argv[0]: absolute path inside the sandbox
	Env        []string
	Cwd        string     // default "/"
	Rlimits    []Rlimit   // nil = DefaultRlimits
	Caps       []string   // nil = Capabilities(); names as "CHOWN" or "CAP_CHOWN"; empty non-nil = none
	NoSeccomp  bool       // false: Docker's default profile is applied
	ExtraFiles []*os.File // become fds 3, 4, ... in the sandboxed process
	Stdout     *os.File   // nil: /dev/null
	Stderr     *os.File   // nil: /dev/null
}

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// withDefaults validates cfg but its Process (Exec does that) and returns
// a copy with defaults filled in: the env's (EnvConfig.withDefaults) and
// the user namespace's.
func (cfg Config) withDefaults() (Config, error) {
	var err error
	if cfg.UserNS != nil {
		return Config{}, fmt.Errorf("sandbox config: Start makes its own user namespace (OwnUserNS), it joins none: %w", errdefs.ErrInvalid)
	}
	if cfg.EnvConfig, err = cfg.EnvConfig.withDefaults(); err != nil {
		return Config{}, err
	}
	if cfg.OwnUserNS {
		if cfg.UIDBase == 0 {
			cfg.UIDBase = UIDMapBase
		}
		if cfg.UIDBase < 0 || cfg.UIDBase > 1<<31-UIDMapSize {
			return Config{}, fmt.Errorf("sandbox config: uid base %d out of range: %w", cfg.UIDBase, errdefs.ErrInvalid)
		}
	}
	return cfg, nil
}

// withDefaults validates p and returns a copy with defaults filled in.
func (p Process) withDefaults() (Process, error) {
	bad := func(f string, a ...any) (Process, error) {
		return Process{}, fmt.Errorf("sandbox config: "+f+": %w", append(a, errdefs.ErrInvalid)...)
	}
	if len(p.Argv) == 0 || !filepath.IsAbs(p.Argv[0]) {
		return bad("argv[0] must be an absolute path, got %q", p.Argv)
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if !filepath.IsAbs(p.Cwd) {
		return bad("cwd %q is not absolute", p.Cwd)
	}
	if p.Rlimits == nil {
		p.Rlimits = DefaultRlimits
	}
	if p.Caps == nil {
		p.Caps = Capabilities()
	}
	if _, err := parseCaps(p.Caps); err != nil {
		return Process{}, fmt.Errorf("sandbox config: %w", err)
	}
	return p, nil
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

// EnvConfig describes a sandbox env: pre-built for a process to join
// (NewEnv, see Env), or a sandbox's own (Config). The zero values of
// optional fields select the documented defaults.
type EnvConfig struct {
	ID           string   // [a-z0-9-]{1,64}; names the cgroup and the run dir (and the instance adopted into it)
	Lowers       []string // extra read-only lower layers above Rootfs, topmost first (e.g. a template's UpperDir)
	Rootfs       string   // "" = the embedded default root (defaultroot.go); else a directory
	Binds        []Bind
	Hostname     string // default: ID
	Network      Network
	Limits       cgroup.Limits
	CgroupParent string // default DefaultCgroupParent
	UpperBytes   int64  // size of the overlay upper tmpfs; default DefaultUpperBytes
	// UserNS, if set, is the user namespace that owns the env's
	// namespaces (its template's): the holder joins it before making
	// them, and root in it owns the env's upper layer. NewEnv only.
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

// envLower is an env's overlay lowerdir option: its Lowers, then its
// root.
func envLower(cfg EnvConfig) string {
	lower := "/"
	if cfg.Rootfs != "" {
		lower = cfg.Rootfs
	}
	return strings.Join(append(append([]string{}, cfg.Lowers...), lower), ":")
}
