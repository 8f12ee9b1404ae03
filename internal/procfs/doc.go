// Package procfs is the one place that reads /proc. It parses the files
// the runtime needs into plain values and answers the question the sfork
// engine asks before it accepts a template: what would forked copies of
// this process share with each other?
//
// # Files read
//
//	/proc/PID/maps          Maps, SharedObjects (ParseMaps parses the text)
//	/proc/PID/smaps         Smaps (ParseSmaps; VmFlags such as "gd")
//	/proc/PID/smaps_rollup  SmapsRollup, PSS (ParseSmaps)
//	/proc/PID/fd/N          FDs, FDLinks, SharedObjects (readlink); StatFD, SharedObjects (stat)
//	/proc/PID/fdinfo/N      FDs (ParseFDInfo parses the text)
//	/proc/PID/status        Status
//	/proc/PID/stat          Stat, State (ParseStat); every function, to tell a live process from an exited one
//	/proc/PID/task          Threads
//	/proc/PID/task/TID/{status,comm} Thread (one thread's own credentials, capabilities, seccomp mode, name)
//	/proc/PID/auxv          Auxv (ParseAuxv, AuxvValue)
//	/proc/PID/pagemap       OpenPagemap, Pagemap.Read (ParsePagemap)
//	/proc/PID/mountinfo     Mounts (ParseMountInfo)
//	/proc/PID/ns/NAME       Namespace (stat), NSLink (readlink), OpenNamespace (open)
//	/proc/PID/{cwd,root,exe} Link (readlink)
//	/proc/PID/personality   Personality
//	/proc/PID/timers        Timers
//	/proc                   PIDs (its numeric entries)
//
// Where a function takes a pid, Self stands for the caller: it reads
// /proc/self, which is right even where /proc belongs to another PID
// namespace than the caller's own pid.
//
// Nothing is written and nothing is cached. Reading another process's maps
// and fds needs PTRACE_MODE_READ access to it (same uid, or root). For an
// answer that holds together, the process should be stopped (the sfork
// template is, under ptrace): a running process may map, unmap, open and
// close between two reads. A descriptor that closes while FDs lists the
// directory is left out, as if it had closed just before.
//
// # Errors
//
// Every function takes a pid > 0 or Self; any other pid is an error
// wrapping errdefs.ErrInvalid, as is a pagemap range that is not page
// aligned.
//
// A process that has exited, whether gone or a zombie not yet reaped, is
// an error wrapping fs.ErrNotExist (the same value as os.ErrNotExist) from
// every function, never an empty answer: the files of a zombie read as
// empty (or fail with EINVAL), which would look like a process that shares
// nothing. A process whose main thread has exited while others run reads
// empty too, and is reported the same way. The check is made after the
// data are read, so an answer with a nil error was read from a live
// process. (A pid that is reused by a new process in between is the
// caller's problem; hold the process stopped or as a child.)
//
// The exception is Stat (and State): a zombie's stat is its last word
// (State 'Z', the exit code in field 52), so they answer for it; only a
// reaped process is an error wrapping fs.ErrNotExist. PIDs takes no pid;
// its only error is that of reading /proc.
//
// No access to the process (EACCES, EPERM) is an error wrapping
// fs.ErrPermission. Text (or binary: auxv, pagemap) that does not have
// the form proc(5) gives it is an error wrapping ErrFormat that names the
// line. Other errors are the *fs.PathError of the read that failed.
//
// # What forked copies share
//
// fork(2) copies private memory and the descriptor table, but the objects
// behind them are shared: every copy of a template sees the same shared
// memory, the same pipe, socket, eventfd or epoll instance. SharedObjects
// lists each such object, so that a template holding one can be refused
// before two untrusting invocations talk through it. It reports
//
//   - shared memory mappings of any protection: anonymous MAP_SHARED
//     ("/dev/zero (deleted)", "[anon_shmem:NAME]"), memfds ("/memfd:"),
//     System V segments ("/SYSV"), POSIX shared memory (a path with
//     "/dev/shm/" in it, so that a sandbox's /dev/shm read from outside
//     counts too). A read-only mapping of shared memory counts: mprotect
//     can make it writable again in every copy;
//   - writable MAP_SHARED mappings of any other file or device;
//   - shared mappings of anything that is not a file: kernel buffers
//     ("anon_inode:[io_uring]", "anon_inode:[perf_event]"), memory with no
//     name, names in brackets other than the kernel's own [vdso], [vvar],
//     [vvar_vclock], [vsyscall] and [uprobes];
//   - descriptors that are memfds, pipes, FIFOs (by stat), sockets, anon
//     inodes other than [pidfd] (eventfd, eventpoll, timerfd, signalfd,
//     inotify, fanotify, io_uring, userfaultfd, bpf objects, ... — an anon
//     inode this package does not know is reported too), and descriptors
//     of a kind it does not know at all.
//
// It does not report read-only shared mappings of ordinary files, regular
// files, directories and devices opened by path (their open file
// description, file offset included, is shared too, but it is not shared
// memory or a message channel), namespace descriptors, or pidfds. Paths
// are as the reading process sees them. Limit: a read-only shared mapping
// of a file the process opened read-write could be made writable with
// mprotect; maps does not show that (smaps' "mw" flag would), so it is not
// reported.
package procfs
