package sandbox

import "github.com/catalyzer/catalyzer/internal/sandbox/sandboxinit"

// Building blocks of the init helper (package sandboxinit) that the OCI
// runtime (package oci) applies from a bundle's config: the same kernel
// calls, so that both isolate alike.

// MaskPath hides p as the init helper hides MaskedPaths: /dev/null bound
// over a file, an empty read-only tmpfs over a directory; a missing path
// is skipped.
func MaskPath(p string) error { return sandboxinit.MaskPath(p) }

// RemountReadonly makes the mount at p read-only, keeping its nosuid,
// nodev, noexec and atime flags.
func RemountReadonly(p string) error { return sandboxinit.RemountReadonly(p) }

// LoopbackUp brings lo up in the caller's network namespace.
func LoopbackUp() error { return sandboxinit.LoopbackUp() }

// MkMountpoint creates dst as a directory or an empty file, like src, for
// a bind mount of src onto it.
func MkMountpoint(src, dst string) error { return sandboxinit.MkMountpoint(src, dst) }
