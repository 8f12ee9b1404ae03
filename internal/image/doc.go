// Package image is our own checkpoint/restore, compiled ahead of time.
//
// Checkpoint (or CheckpointTracee for a process the caller already froze,
// such as a fork template, whose other threads it passes in
// Options.Threads) reads a stopped process, every thread of it: each
// thread's own state through ptrace.ThreadState (registers, xstate,
// signal mask, sigaltstack, clear_child_tid, robust list, rseq, name,
// capabilities, seccomp mode, tid in its PID namespace), the process's by
// an injected batch (sigactions, brk, itimers) and procfs (maps, pagemap,
// auxv, stat, status, personality, cwd, exe, fds, fdinfo, rlimits), and
// compiles it into an image directory: pages.img (memory laid out so that
// each VMA maps straight from it), plan.bin (the restore plan: a ptrace
// batch, format v1), meta.bin (registers, xstate, the thread records and
// the relocation table in fixed structs) and manifest.bin (format
// version, sha256). docs/IMAGE.md describes the format.
//
// Open validates an image before anything runs (hostile images are
// refused with errdefs.ErrInvalid); Image.Plan is decoded once and cached.
// Restore clones the plan, patches its relocations (the restorer's vDSO,
// the path of pages.img, the data area's address, reconnected fds), runs it
// in the restorer (a tiny static ELF that loops on pause(), see
// RestorerBinary and StartRestorer) through the injected executor in one
// round trip, re-creates and sets up the other threads, re-creates the
// POSIX timers with their ids and re-queues the queued signals (timers.go), loads the
// registers and xstate and detaches: the process resumes where it was
// frozen. Shared anonymous memory that the process alone maps is dumped
// whole and rebuilt shared by objects.bin (shmem.go); a process with
// children, or leading a group or session with others in it, is refused
// (tree.go), a session leader alone in it restored as one. RecordWorkingSet and RestoreOptions.Prefetch implement
// working-set prefetch.
//
// # Threads
//
//	checkpoint                         restore (in the restorer)
//	  SeizeGroup, States                 plan: memory, fds, attributes,
//	  (or Options.Threads)                 clone3 set_tid per record ──► threads stopped
//	  one record per other thread          credentials, mask, timers
//	  (regs normalised, orig_rax -1)     Epilogue (main; seccomp TSYNC)
//	                                     ptrace.RestoreThreads: per thread its
//	                                       batch (state, credentials, caps),
//	                                       registers, xstate, mask
//	                                     main registers, executor removed
//	                                     release threads, then detach main
//
// Tids are kept, never rewritten (glibc caches them): a restorer alone in
// a fresh PID namespace always has them free; elsewhere a taken tid is an
// error naming the thread (ErrPidTaken). No thread runs the process's code
// before all are set up.
//
// Errors: anything the image cannot restore faithfully is refused at
// checkpoint with an *UnsupportedError (errors.Is errdefs.ErrNotSupported)
// naming the fd, mapping, thread or feature, threads in different seccomp
// modes with a *ptrace.SeccompError (errdefs.ErrNotSupported); a
// CheckpointTracee without the threads of a multi-threaded process with a
// *ptrace.MultiThreadedError; a corrupt image, or one of an older format
// version, with errdefs.ErrInvalid (ErrChecksum for a checksum mismatch);
// an image from another kernel build or of a newer format with
// errdefs.ErrNotSupported; a thread's tid taken at Restore with
// ErrPidTaken and errdefs.ErrConflict.
package image
