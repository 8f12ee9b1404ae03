// Package boot holds the boot engines: the ways an instance of a function
// comes to life. Every engine returns the same *Instance, ready to be
// invoked, so the platform above does not care how it was made.
//
// Modes:
//
//	scratch  exec the runtime in a fresh sandbox env and run init (import the
//	         handler) — the baseline every other mode must beat (Scratch)
//	fork     sfork from a live, frozen template into a pre-built env (Fork)
//	warm     restore a checkpoint image whose plan is cached and pages
//	         resident (Restore)
//	cold     restore a checkpoint image from disk (Restore)
//
// An engine owns nothing after Boot returns: the Instance owns its sandbox
// and control channel, and Instance.Destroy releases all of it. A Boot that
// fails has already undone whatever it built.
package boot

import (
	"context"
	"fmt"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox"
)

// Mode names a boot mode.
type Mode string

const (
	ModeScratch Mode = "scratch"
	ModeFork    Mode = "fork"
	ModeCold    Mode = "cold"
	ModeWarm    Mode = "warm"
	// ModeAuto is not an engine: the platform resolves it to the best
	// available engine (or to a live instance).
	ModeAuto Mode = "auto"
)

// Modes lists every mode a client may ask for (auto prefers a live
// instance, then fork, then warm, then scratch; never cold).
var Modes = []Mode{ModeFork, ModeWarm, ModeCold, ModeScratch}

// ParseMode validates a client-supplied boot mode; "" means auto.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return ModeAuto, nil
	case ModeScratch, ModeFork, ModeCold, ModeWarm, ModeAuto:
		return m, nil
	}
	return "", fmt.Errorf("unknown boot mode %q (want scratch, fork, cold, warm or auto): %w", s, errdefs.ErrInvalid)
}

// Function is what an engine needs to know about a function. It is the
// platform's record reduced to the boot layer's concerns.
type Function struct {
	Name      string
	Runtime   string // "python", "node", "native"
	Handler   string
	CodeDir   string // host path of the function's code (read-only inside)
	Env       map[string]string
	MemoryMB  int
	TimeoutMs int
	// PidsMax bounds the number of tasks in the instance (0 = default).
	PidsMax int64
	// CPUMillis bounds CPU time (1000 = one CPU; 0 = unlimited).
	CPUMillis int64
	// NetworkHost shares the host's network namespace (explicit opt-in).
	NetworkHost bool
	// UserNS maps root inside to an unprivileged range outside, starting
	// at UIDBase (0: sandbox.UIDMapBase). Templates always run in a user
	// namespace of their own, whatever UserNS says.
	UserNS  bool
	UIDBase int
	// OutputLimit bounds each of stdout/stderr captured per invocation.
	OutputLimit int
}

// uidBase is the host uid root of f's user namespace maps to (fork
// templates and restores always use one).
func (f Function) uidBase() int {
	if f.UIDBase != 0 {
		return f.UIDBase
	}
	return sandbox.UIDMapBase
}

// Engine boots instances in one mode.
type Engine interface {
	Mode() Mode
	// Boot returns an initialized instance of f (its handler loaded).
	Boot(ctx context.Context, f Function) (*Instance, error)
}

// Unavailable is the engine of a mode this configuration cannot offer: it
// refuses with Err instead of falling back silently.
type Unavailable struct {
	M   Mode
	Err error
}

func (u Unavailable) Mode() Mode { return u.M }

func (u Unavailable) Boot(context.Context, Function) (*Instance, error) { return nil, u.Err }
