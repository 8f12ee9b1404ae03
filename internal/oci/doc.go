// Package oci is catalyzer's OCI runtime: runc's lifecycle over a bundle
// (config.json parsed with opencontainers/runtime-spec), as containerd's
// runc shim (io.containerd.runc.v2) drives it through bin/catalyzer-runc.
//
// # Processes
//
// No daemon: every verb is one short-lived invocation that reads and
// writes the container's state file (<root>/<id>/state.json, versioned:
// another version is refused). create re-executes this binary as the
// container's init (MaybeInit, first thing in main) and exits once the
// init is set up and blocked; the init is then the shim's child (the
// shim is a subreaper) and its pid is the one in --pid-file, which the
// shim reaps for the exit status.
//
//	shim ── create ──fork/exec──► init (new namespaces, in its cgroup)
//	            ◄── sync socket: "hooks" / "created" / "error" ──
//	            ──► runs prestart + createRuntime hooks, replies
//	        create exits; init is reparented to the shim
//	shim ── start ── opens <root>/<id>/exec.fifo ──► init writes one
//	        byte, runs startContainer hooks, installs seccomp, execve
//
// Stdio: the init inherits create's fds 0-2 (the shim's pipes) and the
// container's process inherits them from the init by execve; create and
// start keep no copy once they exit, so the shim sees EOF when the
// container's last writer closes. With process.terminal the init makes
// a pty in the container's devpts, sends the master over
// --console-socket (SCM_RIGHTS) and keeps no copy.
//
// Namespaces: new ones are clone flags of the init (the cgroup namespace
// is unshared by the init once it is in its cgroup, so that it is rooted
// there). Namespaces named by path are joined by create from a locked OS
// thread before the clone (setns is per thread), except two: a user
// namespace (setns(CLONE_NEWUSER) needs a single-threaded process: refused,
// errdefs.ErrNotSupported) and a mount namespace, which the child joins
// on its own locked main thread after unshare(CLONE_FS) (the exec of
// /proc/self/exe fails with ENOENT from inside another mount namespace).
// exec joins all of the running init's namespaces the same way and is
// put in its cgroup before it reads its config.
//
// # Reuse of the sandbox layer
//
// The cgroup is package sandbox/cgroup's (NewSpec: an OCI cgroupsPath
// and the spec's resources, v1 and v2; Freeze/Thaw for pause/resume,
// Update, Stats, Kill/Delete); seccomp is compiled from linux.seccomp by
// package sandbox/seccomp's compiler; masked and read-only paths and the
// loopback use the sandbox helpers. The mount table, devices, user and
// capability sets come from the bundle, not from the sandbox's defaults,
// which is why the init is a program of its own (init.go, rootfs.go,
// process.go) rather than sandbox.Start: a spec-driven container and a
// policy-driven function sandbox differ in every step the sandbox fixes.
//
// # Lifecycle
//
// lifecycle.go: each state (created, running, paused, stopped) is a type
// whose methods refuse what it cannot do (errdefs.ErrConflict, "cannot
// pause a container in created state"). The state is read from the
// kernel each time: the init alive (pid and start time, so a recycled
// pid is not mistaken for it), the exec fifo present (not started), the
// cgroup frozen.
//
// # Checkpoint and restore
//
// checkpoint.go and restore.go, on package image's engine with go-runc's
// flag lists. checkpoint seizes the container's threads itself (the
// runtime is outside the container's namespaces, which image.Checkpoint
// refuses) and dumps through image.CheckpointTracee; a paused container
// is thawed for the dump and frozen again if it stays. fds 0-2 and the
// seccomp filter are not dumped: the restore gives the new caller's
// stdio and the restoring bundle's filter. A refusal names what it
// refuses, leaves the container running and removes the image files.
// restore builds the container as create does (namespaces, root,
// mounts, cgroup, seccomp), then the container's init runs the restorer
// (a sealed memfd) with the image bound read-only under the container's
// /dev tmpfs until the restore has read it. The restored process is the
// container's init, so it is the --pid-file pid and the shim's child: no
// monitor is needed for restore, unlike fork below.
//
// # Boot by annotation
//
// Annotations are checked as the API checks its input (parseBoot):
// dev.catalyzer.template=true|false; dev.catalyzer.boot=scratch|fork|
// restore; dev.catalyzer.template-id=<container id> (fork only);
// dev.catalyzer.image=<absolute dir> (restore only). Unknown
// dev.catalyzer.* keys are ErrInvalid.
//
// dev.catalyzer.boot=restore (built): create validates the image
// (image.Open: its manifest, this kernel; only fds 0-2 reconnected) and
// builds the container as for the restore verb, but its init, set up
// and with the restorer memfd ready, blocks on the exec fifo like a
// scratch init; start lets it exec the restorer and restores the image
// into it (restore.go's restoreInto, the restore verb's path). The
// restored process is the init, the shim's child, the --pid-file pid:
// no monitor. process.args are not run.
//
// Design for fork (not implemented yet: create refuses it, and
// template=true, with errdefs.ErrNotSupported). A frozen template must be held by a
// ptrace tracer between runtime invocations, and every ptrace call for
// a tracee comes from one thread of one process. The owner is a
// per-template holder: create of a template container starts, instead
// of the plain init, a holder process (this binary, detached, in the
// container's cgroup parent) that starts the template's init as its
// child, waits for readiness (the process creates /run/catalyzer-ready
// in its root, or signals SIGUSR2 to its pid 1 — one of the two,
// documented per runtime), freezes it under ptrace (sfork.Template) and
// serves fork requests on a unix socket <root>/<id>/holder.sock. The
// template container's --pid-file pid is the holder, which exits with
// the template's status. A fork container's create connects to the
// template's holder socket and asks for a child with the new bundle's
// rootfs layer (an overlay over the template's upper dir) and limits
// (its own cgroup); since the child is the template's, not the shim's,
// create also starts a small monitor (this binary, detached) that holds
// a pidfd of the child, is the pid in --pid-file, forwards kill and
// exits with the child's status (pidfd + PIDFD_INFO_EXIT, as
// sandbox.Env adoption does). Fork has one more constraint: a template under
// containerd's default capabilities has no CAP_SYS_ADMIN, which the
// injected child needs to join the new container's namespaces and for
// sfork's CLONE_NEWPID; templates and their forks would then run in a
// user namespace of their own, entered through sandbox's nsenter.
//
// # Errors
//
// errdefs.ErrInvalid: a bad id, config.json or annotation.
// errdefs.ErrNotSupported: what this runtime does not do (systemd
// cgroups, joining a user namespace, exec into a user namespace, time
// namespaces, idmapped mounts, fork boot and templates). errdefs.ErrConflict:
// an id in use, a transition the state refuses. errdefs.ErrNotFound: a
// container that "does not exist", a signal to one "not running" (the
// shim matches these words). Others carry the failing step of the init
// ("rootfs: mount /proc (proc): ...").
package oci
