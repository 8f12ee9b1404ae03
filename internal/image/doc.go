// Package image is our own checkpoint/restore, compiled ahead of time.
//
// Checkpoint (or CheckpointTracee for a process the caller already froze,
// such as a fork template) reads a stopped single-threaded process: its
// thread's own state through ptrace.Tracee.ThreadState (registers, xstate,
// signal mask, sigaltstack, clear_child_tid, robust list, rseq), the
// process's by an injected batch (sigactions, brk, itimers) and procfs
// (maps, pagemap, auxv, stat, status, personality, cwd, exe, fds,
// fdinfo, rlimits), and compiles it into an image directory: pages.img
// (memory laid out so that each VMA maps straight from it), plan.bin (the
// restore plan: a ptrace batch, format v1), meta.bin (registers, xstate and
// the relocation table in fixed structs) and manifest.bin (format version,
// sha256). docs/IMAGE.md describes the format.
//
// Open validates an image before anything runs (hostile images are
// refused with errdefs.ErrInvalid); Image.Plan is decoded once and cached.
// Restore clones the plan, patches its relocations (the restorer's vDSO,
// the path of pages.img, the data area's address, reconnected fds), runs it
// in the restorer (a tiny static ELF that loops on pause(), see
// RestorerBinary and StartRestorer) through the injected executor in one
// round trip, loads the registers and xstate and detaches: the process
// resumes where it was frozen. RecordWorkingSet and RestoreOptions.Prefetch
// implement working-set prefetch.
//
// Errors: anything the image cannot restore faithfully is refused at
// checkpoint with an *UnsupportedError (errors.Is errdefs.ErrNotSupported)
// naming the fd, mapping or feature; multi-threaded processes with a
// *ptrace.MultiThreadedError; a corrupt image with errdefs.ErrInvalid
// (ErrChecksum for a checksum mismatch); an image from another kernel
// build with errdefs.ErrNotSupported at Restore.
package image
