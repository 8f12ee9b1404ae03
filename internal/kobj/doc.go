// Package kobj gives each copy of a process its own instance of the kernel
// objects runtimes create at start-up to wake and feed their event loops:
// eventfd, timerfd, signalfd and epoll instances, pipes and connected unix
// socket pairs whose two ends the process holds, and shared anonymous
// memory.
//
// A copy made by fork(2), or restored from an image, would otherwise share
// them with its template and its siblings: one instance's wake-up would
// wake another's loop, one's bytes would be read by another (libuv's own
// uv_loop_fork exists for this reason). Copying them per instance is what
// lets Node.js (libuv: epoll, eventfds, signal pipes) and Go (netpoller:
// epoll, eventfd) be forked at all.
//
// # Contract
//
// Capture reads a stopped process (a frozen template) and returns a Table:
// every such object with its state, and how it sits in the process — its
// open file descriptions (flags), the descriptor numbers of each (with
// close-on-exec), the registrations of each epoll instance. Anything else
// a copy would share (other sockets, FIFOs, memfds, inotify, io_uring,
// System V or POSIX shared memory, a pipe or socket whose other end is
// outside, a timerfd with TFD_TIMER_CANCEL_ON_SET, a socket pair with
// descriptors in flight...) is a *SharedError naming every object,
// which wraps errdefs.ErrNotSupported. Descriptors the caller replaces or
// closes in each copy itself (stdio, its control channel) are passed to
// Capture and not looked at.
//
// CaptureObjects is Capture without that last refusal, for a checkpoint,
// which has rules of its own for files and sockets (package image keeps
// the Table in its objects.bin). A checkpoint adds files without a name
// (CaptureFiles), FIFOs (CaptureFIFOs: reopened by their path, with
// the bytes queued in them; the path must be checked by the caller, and
// at restore a path that is not a pipe stops the batch at F_GETPIPE_SZ
// before anything is written or put on a descriptor) and sockets outside
// a pair (CaptureSockets: internet UDP sockets and TCP sockets holding no
// connection, unix sockets unbound, bound, listening or connected to one
// of the process's own, each with its options; every other socket is
// refused by name). Capture, for a fork, never takes those: every copy
// would bind the template's addresses again, so a template holding one
// stays refused.
//
// Table.AddTo appends to a ptrace batch the syscalls that, run by the
// copy, replace each object with a fresh one in the same state, on the
// same descriptor numbers and addresses. The copy's old references (to the
// template's objects) are dropped by the dup3 onto their numbers and the
// final mremap: once the batch has run the copy holds nothing of the
// template's. The entries use only relocations (results, Load32), never a
// descriptor number guessed ahead, so they run anywhere in a batch: in a
// fork's child batch, where the numbers hold the template's objects, and
// in a restorer after its plan, where they are free (each object is
// moved above the table's numbers before it is put on them).
//
// # How each object is re-created
//
//	eventfd    eventfd2(count, EFD_SEMAPHORE if so)
//	timerfd    timerfd_create(clock); timerfd_settime with the time that was
//	           left and the interval (relative); TFD_IOC_SET_TICKS for
//	           expirations not yet read
//	signalfd   signalfd4(-1, mask)
//	pipe       pipe2; F_SETPIPE_SZ to its capacity; a write of the bytes it
//	           held (read at Capture with tee(2), which leaves them in the
//	           template's pipe)
//	socket     socketpair(AF_UNIX, type); a sendto from the other end of
//	pair       every message that was queued at each end (read at Capture
//	           with MSG_PEEK from a peek offset, which leaves them queued;
//	           which socket is whose peer, sock_diag says, asked from the
//	           process's network namespace); then shutdown(2) of each end
//	           shut down in a direction (sock_diag's state; a stream
//	           pair's must mirror, one call sets both ends)
//	socket     socket(family, type, protocol) (a socketpair for the end of
//	           a datagram pair whose other end was closed); setsockopt of
//	           each option the process set; bind (a unix path's stale
//	           socket file unlinked first, if CreateFiles found one: never
//	           another file), connect, shutdown, listen(backlog); after
//	           every object, the datagrams that were queued at each
//	           socket, sent again from their senders
//	FIFO       openat(path, O_RDWR|O_NONBLOCK), a helper that keeps every
//	           other open from blocking and must be a pipe (F_GETPIPE_SZ);
//	           F_SETPIPE_SZ; a write of the bytes it held; an openat of
//	           the path per description, with its access mode
//	epoll      epoll_create1, after every other object is in place; then
//	           epoll_ctl(ADD) of each registration, by descriptor number,
//	           with its event mask (EPOLLET, EPOLLONESHOT... included) and
//	           data. An epoll inside an epoll is made before its watcher.
//	           A registration of a descriptor the caller replaces (its
//	           control socket) registers the copy's own descriptor there;
//	           one whose descriptor the copy closed is dropped.
//	memory     mmap(MAP_SHARED|MAP_ANONYMOUS) at the Table's scratch
//	           address, process_vm_readv of the old pages into it,
//	           mprotect, mremap(MREMAP_FIXED) over the old mapping
//
// Then each description gets its status flags (F_SETFL: O_NONBLOCK,
// O_DIRECT) and is dup3'd onto each of its descriptor numbers.
//
// State is the template's at Capture: a timer's remaining time does not
// run while the template is frozen, so every copy sees the time that was
// left at the freeze, as a restored process sees the time left at its
// checkpoint. An edge-triggered registration whose event the template had
// already consumed is reported once more to the copy (the ready list is
// rebuilt by polling each file); event loops treat that as a spurious
// wake-up. Reading a pipe's bytes and shared memory at Capture needs
// PTRACE_MODE_ATTACH access (pidfd_getfd, process_vm_readv).
//
// Encode and Decode carry a Table in a checkpoint image (see
// docs/IMAGE.md); Decode validates every count and size.
package kobj
