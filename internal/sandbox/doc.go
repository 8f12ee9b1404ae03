// Package sandbox is the host side of the sandbox env: it starts one
// process fully isolated and tears it down leaving nothing behind. The
// in-sandbox side, the init helper this package re-executes, is package
// sandboxinit; the wire between them is package initwire.
//
// # Contract
//
// Start returns once the program in Config.Argv has been exec'd inside the
// sandbox, or fails with the init helper's error (an *InitError naming the
// step, e.g. "exec /usr/bin/python3: no such file or directory", that
// unwraps to the errno); on failure everything half-built is undone. A bad
// Config is errdefs.ErrInvalid, a live ID errdefs.ErrConflict. Destroy
// kills every process of the sandbox, reaps it and removes its cgroup and
// run dir; it is idempotent. Sweep, at daemon start, removes what a killed
// daemon left. Binaries that start sandboxes must call MaybeInit first
// thing in main (and in TestMain).
//
// # Isolation
//
//   - PID, mount, UTS, IPC namespaces always; a network namespace with only
//     lo (up) unless Network is NetworkHost; a user namespace when OwnUserNS
//     (root inside = UIDBase outside, 65536 ids).
//   - The program is PID 1 of its PID namespace (it replaces the init
//     helper by execve): when it dies the kernel kills the rest. As PID 1 it
//     ignores signals it has no handler for, except SIGKILL from outside.
//   - Root is an overlay: lower = Config.Rootfs or the embedded default
//     root (defaultroot.go: the host's system dirs bound read-only, a
//     curated /etc, empty mount points; no /root, /home, /run, /var/lib or
//     state dir of the host), upper and work on a per-instance tmpfs of UpperBytes, so writes under
//     / never reach the host and vanish with the sandbox. Binds are
//     read-only unless Writable. Fresh /proc, minimal /dev (null, zero,
//     full, random, urandom, tty bound from the host; a private devpts
//     instance with ptmx; /dev/shm), /tmp tmpfs, /sys read-only (a fresh
//     sysfs in a new net namespace, else the host's, every mount of it
//     read-only). runc's default masked and read-only paths (MaskedPaths,
//     ReadonlyPaths).
//   - A cgroup (package cgroup) named Config.ID under CgroupParent,
//     joined before the helper does anything, so every process and page of
//     the sandbox is accounted; Exit.OOMKilled is read from it.
//   - Rlimits (default NOFILE 1024/1024), capabilities limited to Caps
//     (Docker's default set, Capabilities()) in the bounding, permitted
//     and effective sets, inheritable and ambient cleared (as runc since
//     CVE-2022-24769), no_new_privs, and
//     Docker's default seccomp profile (package seccomp) unless NoSeccomp.
//     Only fds 0-2 and ExtraFiles (3, 4, ...) cross the exec.
//   - The program runs as uid/gid 0 of its namespace.
//
// # Setup order
//
// Daemon (Start = Prestart, then Exec). Prestart: validate; mkdir
// RunDir/<parent>/<id>; create the cgroup; (OwnUserNS or Template only:
// mount the instance tmpfs and overlay there, see below); re-exec
// /proc/self/exe as the init helper with CLONE_NEWPID|NEWNS|NEWUTS|NEWIPC
// (+NEWNET, +NEWUSER with uid/gid maps), Pdeathsig SIGKILL; add the
// helper's pid to the cgroup; only then send the env config (a datagram
// on its config socket; the helper blocks reading it); read the status
// pipe to the helper's ready report. Exec: send the process part with its
// files (SCM_RIGHTS); read the status pipe: phase marks, then EOF (the
// pipe is close-on-exec: exec succeeded) or an error. A Pending (what
// Prestart returns) can wait in a Pool, so that only Exec is on a boot's
// path.
//
// Helper (package sandboxinit, PID 1, its OS thread locked throughout):
// config, rootfs, net, process, security, exec, in the order its package doc
// gives; the wire (fds, config, report stream) is package initwire.
// Config is EnvConfig (the env) plus Process (the program): each has its
// own defaults, and the helper gets both parts, decided here.
//
// # Rootfs and user namespaces
//
// Without OwnUserNS the helper, real root in a mount namespace owned by the
// initial user namespace, mounts the overlay itself: the host never sees it
// and it dies with the sandbox's mount namespace. With OwnUserNS that fails:
// overlayfs clones its lower layers privately, and "/" has submounts that
// are locked in a child user namespace ("failed to clone lowerpath"). So
// for OwnUserNS the daemon mounts the tmpfs and overlay in its own mount
// namespace, the helper (whose namespace holds a copy) bind-mounts its copy
// onto itself (a locked mount cannot be pivoted into), pivots, and after
// exec the daemon lazily unmounts its copy. The upper's root is chowned to
// UIDMapBase so that root inside can create files in "/"; files and
// directories of the lower layer stay owned by (unmapped) host root and are
// therefore read-only to the sandbox, as in any rootless container without
// idmapped mounts. Measured on the development VM (median of 30 starts):
// the daemon-side mount costs ~0.25 ms ("rootfs-host"), about what the
// helper would spend on it; per-top-level-directory overlays, the
// alternative, would need one overlay per directory of "/" (~20 mounts).
//
// # Templates
//
// A Template sandbox is the parent of sforked instances: an initialized
// function instance that the daemon freezes under ptrace and clones. Two
// things differ from a plain sandbox.
//
// Its overlay is built on the host side, as for OwnUserNS (the same code:
// tmpfs on RunDir/<parent>/<id>, overlay on merged, the helper pivots
// into its copy); after exec the daemon drops its overlay but keeps the
// tmpfs, so UpperDir (RunDir/<parent>/<id>/upper) shows what the template
// wrote under /, whiteouts and opaque dirs included. Forked instances use
// it as the top read-only lower layer of their Env. Overlayfs logs that a
// lower layer is in use as another mount's upper ("undefined behavior"
// if both change): the template is frozen while forks use it. Destroy
// and Sweep unmount it. A template runs with OwnUserNS (its owner, package
// boot, always asks for it): its user namespace (OpenUserNS) then owns
// the envs its forks join (EnvConfig.UserNS), so that every capability it
// keeps is worth something in that namespace only.
//
// Capabilities: the helper sets bounding and permitted to Caps plus
// CAP_SYS_ADMIN, effective to Caps, inheritable and ambient empty, so
// that a forked child can raise CAP_SYS_ADMIN (capset) for its join batch
// (setns into the env, mount its /proc). Note that execve as uid 0 sets
// the effective set to the new permitted set (capabilities(7): root's
// file effective bit counts as set), so the program STARTS with
// CAP_SYS_ADMIN effective; there is no way around that rule short of file
// capabilities on the runtime binary or SECBIT_NOROOT (which would lose
// CAP_SYS_ADMIN at exec). A runtime agent may capset it out of its
// effective set before importing the handler; any code in the template
// can raise it back, so the protection is the seccomp filter, not the
// effective set.
//
// The seccomp program is Docker's default compiled for Caps, NOT for
// CAP_SYS_ADMIN: mount, umount2, pivot_root, unshare, setns, clone with
// namespace flags (clone3 is ENOSYS), bpf, perf_event_open, fanotify_init,
// fsopen/fsmount/open_tree/move_mount, quotactl, swapon, keyctl, syslog,
// lookup_dcookie stay EPERM whatever the capability sets say (tested:
// capset raise, then mount, unshare, clone(CLONE_NEWNS), setns fail with
// EPERM). The residual risk is CAP_SYS_ADMIN checks inside syscalls the
// profile allows for everyone:
//
//   - sethostname/setdomainname, SysV IPC_SET/IPC_RMID on others'
//     objects, TIOCSTI/TIOCCONS on its own ttys: only its own UTS and
//     IPC namespaces and its own devpts instance.
//   - ioctls on devices (block-device, loop, FIFREEZE...): the device
//     cgroup lets it open only null, zero, full, random, urandom, tty,
//     ptmx and its pts; writes under /proc/sys (many gated on
//     CAP_SYS_ADMIN) hit the read-only bind; /sys is read-only.
//   - trusted.* extended attributes (setxattr is allowed): through the
//     overlay, overlayfs refuses trusted.overlay.* (its own private
//     xattrs), so the template cannot plant redirects or opaque marks in
//     the upper that its forks read; other trusted.* names land in its
//     own tmpfs layers.
//   - exceeding fs.file-max and RLIMIT_NPROC: bounded by RLIMIT_NOFILE and
//     the pids cgroup limit (set one).
//   - ioprio_set(IOPRIO_CLASS_RT): a template can give its I/O realtime
//     priority; use an io/blkio limit where disk I/O matters.
//   - SCM_CREDENTIALS with another pid: the daemon must not trust
//     SCM_CREDENTIALS from an instance (SO_PEERCRED is not forgeable).
//   - madvise(MADV_HWPOISON/MADV_SOFT_OFFLINE) on kernels with
//     CONFIG_MEMORY_FAILURE (not set on the development kernel): retiring
//     physical pages is a host-wide DoS. Deny those advice values in the
//     template's seccomp program where that config is on.
//
// Forked children leave this behind: their join batch drops
// CAP_SYS_ADMIN from the bounding, permitted and effective sets before
// the template's code resumes, so instances hold Caps only.
//
// # Envs
//
// An Env is a sandbox env built ahead of time (by a Pool, off the
// critical path) for a forked instance to join. NewEnv creates the run
// dir and the cgroup (with Limits) and re-executes /proc/self/exe as a
// holder (MaybeInit, "hold" mode) with CLONE_NEWNS|NEWUTS|NEWIPC (+NEWNET
// unless NetworkHost), no new PID or user namespace, Pdeathsig SIGKILL.
// The holder builds the root exactly as the init helper does
// with lowerdir = Lowers..., then Rootfs or "/", upper and work on its own
// tmpfs (in its mount namespace only), except that /proc is left an empty
// directory: the joining process mounts proc for its own PID namespace
// there and must apply the /proc entries of MaskedPaths and ReadonlyPaths
// over it (the /sys ones are applied by the holder). Then hostname and lo
// up, a ready report; then it drops every capability (a joiner must be
// able to ptrace-read it) and execs the pause stub (package pause, from a
// memfd: a few pages instead of a Go runtime), which waits for SIGKILL
// (retire, Release) or the parent-death signal (daemon gone). The
// holder is put in the env's cgroup before it reads its config and makes
// a cgroup namespace rooted there, which the joining process enters too
// (EnvNamespaces); until it is retired it is one more task of the cgroup.
// With EnvConfig.UserNS the daemon mounts the env's overlay and binds (as
// for an OwnUserNS sandbox) and starts the holder as nsenter (nsenter/
// nsenter.c): it joins that user namespace, becomes its root, unshares the
// env's namespaces there (so that they are owned by it) and execs the
// daemon binary by fd; the holder binds its copy of the prepared root.
// Lowers must not lie below another layer on the same file system (below
// "/" on the root file system, say): overlayfs refuses overlapping layers
// (ELOOP, an *InitError of step "rootfs"); a template's UpperDir is its
// own tmpfs and qualifies.
//
// Joining: the template, under ptrace, clones a child into a new PID
// namespace; the child does setns(PidFD(), JoinFlags()) (the pidfd
// reaches it over SCM_RIGHTS; a restorer started before its env opens
// NamespacePaths instead), attaches its /proc, masks it, and the daemon
// calls Adopt(child's host pid): the pid joins the cgroup (the daemon
// does this from outside), the holder is retired (SIGKILL, reaped; the
// child keeps the namespaces alive) as soon as the child is seen in all
// of its namespaces (mount, network, UTS, IPC, cgroup), at once or by a goroutine polling until
// JoinTimeout. The returned Sandbox is not our child: Wait learns the
// exit through a pidfd (pollable; readable once the process exited), then
// PIDFD_GET_INFO/PIDFD_INFO_EXIT (kernel 6.15+; set once the parent
// reaped it) or, while the template has not reaped it yet, the exit_code
// field of /proc/<pid>/stat (verified by signalling the pidfd: 0 means not
// reaped, so the same process). Without either the Exit has Code -1 and
// Wait's error wraps errdefs.ErrNotSupported. Destroy sends SIGKILL
// through the pidfd (the child is PID 1 of its PID namespace: the rest
// dies with it), kills and deletes the cgroup, removes the run dir.
// Release destroys a never-adopted env; Sweep removes envs' cgroups and
// run dirs like sandboxes' (holders die with the daemon). The env's
// mount, net, UTS and IPC namespaces, its tmpfs and overlay, die with the
// last process in them.
//
// Measured on the development VM (BenchmarkNewEnv, median of 40):
// NewEnv 7.2 ms = cgroup 0.7, spawn 1.1 (clone with new namespaces +
// exec), config 3.7 (the holder's Go runtime start), rootfs 1.0, net 0.2,
// ready 0.2; Release 1.9 ms. A Pool keeps that off the critical path;
// joining (setns + proc mount) is measured with the sfork engine.
//
// # Phases
//
// Phases names each measured step of Start: cgroup, rootfs-host
// (OwnUserNS or Template), spawn, join, config, rootfs, net, ready
// (Prestart's), send, process, security, exec (Exec's). Timestamps are
// CLOCK_MONOTONIC, shared by the daemon and the helper.
//
// # Caveats
//
// Pdeathsig is tied to the daemon thread that forked the helper: a daemon
// that ends a goroutine while it holds LockOSThread may kill sandboxes.
// Bind targets are resolved inside the new root as the helper sees it; a
// symlink in an untrusted Rootfs can redirect a bind mount, but only to a
// place in the sandbox's own mount namespace.
package sandbox
