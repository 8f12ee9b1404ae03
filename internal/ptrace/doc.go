// Package ptrace is the process-control layer: it stops a single-threaded
// process (Seize), reads and writes its registers and memory, injects
// syscalls and runs whole batches of syscalls inside it in one ptrace
// round trip. The sfork engine (inject a fork, let the child load the
// template's registers) and the restore engine (run a compiled restore
// plan) are built on it. For a multi-threaded process, SeizeGroup stops
// every thread (a Tracee each) and ThreadGroup.States reads what each
// thread has of its own (ThreadState: registers, xstate, signal mask,
// sigaltstack, clear_child_tid, robust list, rseq, name, capabilities,
// seccomp mode, namespace tid); AddThreadClones and RestoreThreads
// re-create such threads in another process (see "Re-creating threads"),
// for fork and restore alike. x86-64 only.
//
// # Threading rule
//
// The kernel binds a tracee to the thread that attached it: every ptrace
// request and every wait4 for that tracee must come from that one OS
// thread. A Tracer owns a goroutine locked to its thread for its whole life
// (runtime.LockOSThread, never unlocked; the thread exits with the
// goroutine) and runs closures there (Tracer.Do). Every Tracee method goes
// through Do; Do called from the tracer thread itself runs inline, so
// methods compose inside one Do. ReadMem/WriteMem use /proc/PID/mem and
// need no particular thread. The process that traces must not wait4 its
// tracees elsewhere (an exec.Cmd.Wait on a traced child would steal stops):
// wait only after Detach.
//
// # Attaching
//
// Seize uses PTRACE_SEIZE (options: TRACESYSGOOD always; TRACECLONE,
// TRACEFORK/VFORK and EXITKILL by default, see TraceClone, TraceFork,
// ExitKill), then PTRACE_INTERRUPT, and waits for the interrupt (or group)
// stop. Processes with more than one entry in /proc/PID/task are refused
// with a *MultiThreadedError (errors.Is ErrMultiThreaded and
// errdefs.ErrNotSupported); the count is taken again once stopped. Signals
// that arrive while we hold the tracee or run injected code are recorded and
// suppressed, then re-raised (tgkill) by Detach. Children created by an
// injected fork/clone are auto-attached by the kernel; Adopt waits for their
// first stop and makes them Tracees of the same Tracer.
//
// # Registers and restarts
//
// Regs/SetRegs use PTRACE_GETREGS (user_regs_struct, with fs_base and
// gs_base); XState/SetXState the whole XSAVE area (NT_X86_XSTATE, its size
// learned once from the kernel). A thread stopped inside a blocking syscall
// shows rax = -ERESTART*; NormalizeRestart rewinds rip onto the syscall
// instruction and restores rax so that any copy resumed from those
// registers re-issues the call. Syscall and Exec always put back the
// normalised registers: after injected code the thread is no longer at the
// stop where the kernel would have done the restart itself.
//
// # Injected syscalls and the executor
//
// The first injected syscall jumps to a syscall instruction found in the
// tracee's vDSO and uses PTRACE_SYSCALL (two stops). Exec (or
// InstallExecutor) uses that to mmap one private anonymous region of
// ExecutorRegionSize bytes: page 0 holds the executor (executor/executor.c,
// built by executor/build.sh into executor_amd64.bin, embedded) and is made
// R-X; then 16 KiB of stack for it; then the batch area. From then on an
// injected syscall is one round trip (rip = "syscall; int3" at offset 0) and
// a batch is one round trip: rip = offset 8, rdi = batch address, rsp = the
// executor's stack, PTRACE_CONT, wait for the final int3's SIGTRAP. Each
// fork/clone event and each intercepted signal adds one stop. Forked children
// inherit the region at the same address. Tracee.RoundTrips counts stops
// (wait4 reports), Tracee.PtraceCalls counts ptrace requests.
//
// # Batch format, version 1 (a contract: restore plans reuse it)
//
// Little-endian. All offsets are from the start of the batch, which may be
// mapped at any address; all regions 8-byte aligned and disjoint.
//
//	header (64 bytes)
//	  0  u32 magic 0x54425a43 ("CZBT")
//	  4  u16 version (1)
//	  6  u16 header size (64)
//	  8  u32 entry count (<= 65536)
//	 12  u32 entry size (64)
//	 16  u32 entries offset
//	 20  u32 data area offset
//	 24  u32 data area size
//	 28  u32 results offset
//	 32  u32 total size
//	 36  u32 flags (0)
//	 40  24 reserved bytes (0)
//	entry (64 bytes)
//	  0  u32 syscall number
//	  4  u16 flags: 0x1 IGNORE_ERROR, 0x2 FORK_POINT,
//	       0x4 REPEAT_WHILE_POSITIVE, 0x8 STOP_AFTER (none: STOP_ON_ERROR)
//	  6  u16 reserved (0)
//	  8  u32 relocation mask: 2 bits per argument k at bits 2k..2k+1:
//	       0 literal, 1 result of entry args[k] (an earlier entry),
//	       2 data area address + args[k],
//	       3 int32 loaded from data area + args[k] (4-aligned), sign-extended
//	 12  u32 reserved (0)
//	 16  u64 args[6]
//	results (16 + 8*count bytes, written by the executor)
//	  0  u64 status: 0 not run, 1 running, 2 done, 3 error, 4 paused,
//	       5 fork parent
//	  8  u64 index of the last entry that ran
//	 16  i64 result of each entry
//
// The executor applies the relocations of each entry just before issuing
// it. A result in [-4095, -1] stops the batch (status 3) unless the entry
// has IGNORE_ERROR. FORK_POINT: a positive result (the parent) ends the
// batch with status 5; the child (result 0) goes on with the next entries in
// its own copy of memory (fork-like clones only: no CLONE_VM).
// REPEAT_WHILE_POSITIVE re-issues the call while it returns > 0 and records
// the last result. STOP_AFTER sets status 4 and executes int3; continuing
// the tracee goes on with the next entry. Decode/Validate check all of this
// (FuzzDecodeBatch); Batch builds canonical batches (header, entries, data,
// results).
//
// The kernel structs a batch's syscalls read from its data area
// (clone_args, iovec, msghdr, sock_fprog, stack_t, itimerspec,
// epoll_event, flock, sigevent, the capset header and data) are laid out
// once, in kstruct.go: x86-64 layouts with a size constant and named
// field offsets each, and a builder (CloneArgs.Bytes, Iovec, Msghdr, ...)
// that every package writing one uses; kstruct_test.go checks each
// against x/sys/unix's types.
//
// # Re-creating threads
//
// Both the sfork engine (in each child) and a restore (in the restorer)
// re-create a process's other threads the same way:
//
//	batch in the main thread          per thread (RestoreThreads)
//	  clone3(ThreadCloneArgs,           Adopt (its first stop; it reads
//	    set_tid = NSTID) per thread       and writes memory through the
//	  -> clone event, thread stopped      main thread's /proc/PID/mem)
//	                                    batch on the shared executor
//	                                    code, in a slot of its own:
//	                                      rseq, set_robust_list,
//	                                      sigaltstack, PR_SET_NAME,
//	                                      PR_CAPBSET_DROP..., Extra,
//	                                      ambient clear, capset, ambient
//	                                      raise
//	                                    SetRegs, SetXState, SetSigMask
//	Release: detach every thread; the caller then lets the main thread go.
//
// The main thread's tracee must trace clones (TraceClone) and hold
// CAP_CHECKPOINT_RESTORE for set_tid; a tid already taken in its PID
// namespace fails the clone3 with EEXIST (glibc caches each thread's tid
// in its descriptor, so a different tid is not an option). The threads'
// batches run side by side: all are written in one write, each in a slot
// of the batch area (its batch, then a 2 KiB stack of its own), all are
// started, then each is waited for, as many at a time as fit in the
// batch area; only injected code runs meanwhile (the main thread stays
// stopped), and none runs its own code until all are set up. Measured
// (BenchmarkForkThreads, a C template of 9 threads, p50 of 300 forks,
// 2-vCPU VM, three interleaved runs): 1.9-2.7 ms per fork one thread
// after another, 0.8-1.7 ms side by side; with the VM loaded (load
// 9-14) 2.8 against 2.7 ms (medians of six runs): the overlap needs an
// idle CPU, and each thread's stops remain. A thread's
// capabilities are its recorded ones Within ThreadSetup.Limit; the kernel
// clears a new thread's rseq, robust list and sigaltstack, which its batch
// sets again. A thread that was inside a syscall resumes from normalised
// registers (NormalizeRestart), and the others restart, but for an
// ERESTART_RESTARTBLOCK call (relative nanosleep and clock_nanosleep,
// futex waits with a timeout, poll): the kernel resumes those through
// restart_syscall from the thread's restart block, which clone copies
// from the creator, so a re-created thread would resume its creator's
// interrupted call (a restored thread its restorer's) and could sleep
// for good. RestoreThreads gives each such thread an EINTR return from
// its call instead (OwnRestart), what a fresh restart block gives and
// what CRIU's restore gives; TestRecreatedThreadsTick freezes tickers in
// each kind of wait under a main thread in a 1000 s sleep.
//
// # Errors
//
// Injected syscalls fail with *SyscallError, batch entries with *EntryError
// ("entry 3 (dup2): EBADF (bad file descriptor)"); both unwrap to the
// unix.Errno. A tracee that exits under us gives ErrExited; a call that
// does not fit the tracee's state ErrState (errdefs.ErrConflict); a bad
// binary batch errdefs.ErrInvalid; a batch over MaxBatchSize
// errdefs.ErrTooLarge; threads of one process in different seccomp modes
// a *SeccompError (errdefs.ErrNotSupported).
package ptrace
