package sandbox

// Building blocks of the init helper that the OCI runtime (package oci)
// applies from a bundle's config: the same kernel calls, so that both
// isolate alike.

// MaskPath hides p as the init helper hides MaskedPaths: /dev/null bound
// over a file, an empty read-only tmpfs over a directory; a missing path
// is skipped.
func MaskPath(p string) error { return maskPath(p) }

// RemountReadonly makes the mount at p read-only, keeping its nosuid,
// nodev, noexec and atime flags.
func RemountReadonly(p string) error { return remountRO(p) }

// LoopbackUp brings lo up in the caller's network namespace.
func LoopbackUp() error { return loopbackUp() }

// MkMountpoint creates dst as a directory or an empty file, like src, for
// a bind mount of src onto it.
func MkMountpoint(src, dst string) error { return mkMountpoint(src, dst) }
