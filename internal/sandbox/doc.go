// Package sandbox is the sandbox env: it starts one process fully isolated
// and tears it down leaving nothing behind.
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
//     lo (up) unless Network is NetworkHost; a user namespace when UserNS
//     (root inside = UIDMapBase outside, 65536 ids).
//   - The program is PID 1 of its PID namespace (it replaces the init
//     helper by execve): when it dies the kernel kills the rest. As PID 1 it
//     ignores signals it has no handler for, except SIGKILL from outside.
//   - Root is an overlay: lower = Config.Rootfs or the host's "/" (only the
//     root mount: host submounts such as /proc or /mnt/x are not visible),
//     upper and work on a per-instance tmpfs of UpperBytes, so writes under
//     / never reach the host and vanish with the sandbox. Binds are
//     read-only unless Writable. Fresh /proc, minimal /dev (null, zero,
//     full, random, urandom, tty bound from the host; a private devpts
//     instance with ptmx; /dev/shm), /tmp tmpfs, /sys read-only (a fresh
//     sysfs in a new net namespace, else the host's, every mount of it
//     read-only). runc's default masked and read-only paths.
//   - A cgroup (package cgroup) named Config.ID under CgroupParent,
//     joined before the helper does anything, so every process and page of
//     the sandbox is accounted; Exit.OOMKilled is read from it.
//   - Rlimits (default NOFILE 1024/1024), capabilities limited to Caps
//     (Docker's default set, Capabilities()) in the bounding, permitted,
//     effective and inheritable sets, ambient cleared, no_new_privs, and
//     Docker's default seccomp profile (package seccomp) unless NoSeccomp.
//     Only fds 0-2 and ExtraFiles (3, 4, ...) cross the exec.
//   - The program runs as uid/gid 0 of its namespace.
//
// # Setup order
//
// Daemon (Start): validate; mkdir RunDir/<parent>/<id>; create the cgroup;
// (UserNS only: mount the instance tmpfs and overlay there, see below);
// re-exec /proc/self/exe as the init helper with CLONE_NEWPID|NEWNS|NEWUTS|
// NEWIPC (+NEWNET, +NEWUSER with uid/gid maps), Pdeathsig SIGKILL; add the
// helper's pid to the cgroup; only then send the config (JSON on a pipe;
// the helper blocks reading it); read the status pipe: phase marks, then
// EOF (the pipe is close-on-exec: exec succeeded) or an error.
//
// Helper (MaybeInit, PID 1, its OS thread locked throughout): make /
// rprivate; mount the instance tmpfs and the overlay (or bind the daemon's
// copy); binds (read-only by remount); /proc; /dev (tmpfs, device binds,
// devpts, shm, symlinks); /tmp; /sys; pivot_root(".", ".") and detach the
// old root; masked paths (/dev/null or an empty read-only tmpfs on top),
// read-only paths; sethostname; lo up; rlimits; chdir Cwd; drop
// capabilities; no_new_privs; seccomp; mark every fd from 3+len(ExtraFiles)
// close-on-exec; execve.
//
// # Rootfs and user namespaces
//
// Without UserNS the helper, real root in a mount namespace owned by the
// initial user namespace, mounts the overlay itself: the host never sees it
// and it dies with the sandbox's mount namespace. With UserNS that fails:
// overlayfs clones its lower layers privately, and "/" has submounts that
// are locked in a child user namespace ("failed to clone lowerpath"). So
// for UserNS the daemon mounts the tmpfs and overlay in its own mount
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
// # Phases
//
// Phases names each measured step of Start: cgroup, rootfs-host (UserNS),
// spawn, join, config, rootfs, net, security, exec. Timestamps are
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
