package platform

import (
	"fmt"
	"regexp"
	"time"

	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// Function is a deployed function as the registry stores it.
type Function struct {
	Name         string            `json:"name"`
	Runtime      string            `json:"runtime"`
	Handler      string            `json:"handler"`
	CodeDigest   string            `json:"code_digest"`
	MemoryMB     int               `json:"memory_mb"`
	TimeoutMs    int               `json:"timeout_ms"`
	Env          map[string]string `json:"env,omitempty"`
	MaxInstances int               `json:"max_instances"`
	Network      string            `json:"network"`
	// UIDSlot picks the function's own host uid range (see uidBase):
	// fixed at first deploy, never shared by two functions of one daemon.
	UIDSlot   int       `json:"uid_slot"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// DeployRequest is what a deploy asks for (the API converts its wire
// body, wire.DeployRequest, to it). Exactly one of CodePath and
// CodeTgzB64 is set.
type DeployRequest struct {
	Runtime      string
	Handler      string
	CodePath     string
	CodeTgzB64   string
	MemoryMB     int
	TimeoutMs    int
	Env          map[string]string
	MaxInstances int
	Network      string
}

// Defaults and bounds of a function's settings.
const (
	DefaultMemoryMB     = 256
	MinMemoryMB         = 16
	MaxMemoryMB         = 16384
	DefaultTimeoutMs    = 30_000
	MaxTimeoutMs        = 900_000
	DefaultMaxInstances = 10
	MaxMaxInstances     = 1000
	MaxEnvBytes         = 4096
)

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ValidateName checks a function name: lower-case letters, digits, '-'
// and '_', starting with a letter or digit, at most 63 characters.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("function name %q: use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit: %w", name, errdefs.ErrInvalid)
	}
	return nil
}

// normalize validates r (except its code) and fills in defaults.
func (r *DeployRequest) normalize() error {
	if r.Runtime == "" {
		return fmt.Errorf("runtime is required (one of %v): %w", runtimes.Names(), errdefs.ErrInvalid)
	}
	if _, err := runtimes.Lookup(r.Runtime); err != nil {
		return err
	}
	if r.Handler == "" {
		return fmt.Errorf("handler is required (e.g. \"main.handler\"): %w", errdefs.ErrInvalid)
	}
	switch {
	case r.CodePath == "" && r.CodeTgzB64 == "":
		return fmt.Errorf("code is required: set code_path (an absolute directory on the daemon's host) or code_tgz_b64: %w", errdefs.ErrInvalid)
	case r.CodePath != "" && r.CodeTgzB64 != "":
		return fmt.Errorf("set only one of code_path and code_tgz_b64: %w", errdefs.ErrInvalid)
	}
	if r.MemoryMB == 0 {
		r.MemoryMB = DefaultMemoryMB
	}
	if r.MemoryMB < MinMemoryMB || r.MemoryMB > MaxMemoryMB {
		return fmt.Errorf("memory_mb %d out of range [%d, %d]: %w", r.MemoryMB, MinMemoryMB, MaxMemoryMB, errdefs.ErrInvalid)
	}
	if r.TimeoutMs == 0 {
		r.TimeoutMs = DefaultTimeoutMs
	}
	if r.TimeoutMs < 1 || r.TimeoutMs > MaxTimeoutMs {
		return fmt.Errorf("timeout_ms %d out of range [1, %d]: %w", r.TimeoutMs, MaxTimeoutMs, errdefs.ErrInvalid)
	}
	if r.MaxInstances == 0 {
		r.MaxInstances = DefaultMaxInstances
	}
	if r.MaxInstances < 1 || r.MaxInstances > MaxMaxInstances {
		return fmt.Errorf("max_instances %d out of range [1, %d]: %w", r.MaxInstances, MaxMaxInstances, errdefs.ErrInvalid)
	}
	switch r.Network {
	case "":
		r.Network = "none"
	case "none", "host":
	default:
		return fmt.Errorf("network %q: want \"none\" (loopback only, the default) or \"host\": %w", r.Network, errdefs.ErrInvalid)
	}
	size := 0
	for k, v := range r.Env {
		if !envKeyRE.MatchString(k) {
			return fmt.Errorf("env key %q: use letters, digits and '_', not starting with a digit: %w", k, errdefs.ErrInvalid)
		}
		if len(k) > 9 && k[:10] == "CATALYZER_" {
			return fmt.Errorf("env key %q: the CATALYZER_ prefix is reserved: %w", k, errdefs.ErrInvalid)
		}
		size += len(k) + len(v) + 2
	}
	if size > MaxEnvBytes {
		return fmt.Errorf("env is %d bytes, the limit is %d: %w", size, MaxEnvBytes, errdefs.ErrInvalid)
	}
	return nil
}
