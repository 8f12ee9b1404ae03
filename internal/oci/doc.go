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
// dev.catalyzer.template=true (built, template.go): the container is a
// scratch container whose process gets one more descriptor, the fork
// channel (a unix socket) on fd 3+--preserve-fds, and create starts a
// holder for it: this binary re-executed, detached (its own session,
// /dev/null stdio, none of the shim's descriptors), its pid and start
// time in the state file. A frozen template must be held by one ptrace
// tracer between runtime invocations, which is why the holder exists.
// The process signals readiness on the channel: it writes the line
// "ready", then reads a line from it (`echo ready >&3; read go <&3`).
// The holder freezes it at once (sfork.FreezeWith, threads and all),
// writes <root>/<id>/frozen.json and serves the template on
// <root>/<id>/holder.sock (JSON lines; "info" today). A signal is no
// readiness signal: the process is PID 1 of its PID namespace and the
// kernel drops the SIGSTOP it sends itself. The template's process
// stays the init, the shim's child and --pid-file pid; SIGKILL ends
// it (the holder, its tracer, reaps it first and exits, and the shim
// reaps it next); delete stops the holder (SIGTERM: it kills and reaps
// the template) before it removes the cgroup. Signals other than
// SIGKILL wait while it is frozen.
//
// Fork (not built: create refuses dev.catalyzer.boot=fork with
// errdefs.ErrNotSupported, naming why). A fork container's create would
// ask the template's holder for a child with the new bundle's rootfs,
// namespaces and limits; since the child is the template's, not the
// shim's, a small monitor (this binary, detached) would hold a pidfd of
// it, be the pid in --pid-file and exit with its status. What blocks
// it is the template's capabilities: a fork must be PID 1 of a PID
// namespace of its own, and the template's clone(CLONE_NEWPID) needs
// CAP_SYS_ADMIN in its user namespace, which containerd's defaults do
// not give; the kernel facts are checked by TestKernelForkCapabilityFacts
// and the way that would work (a per-template user namespace the
// template enters at freeze, with an env factory inside it) is in
// docs/KUBERNETES.md, "Fork", with the RuntimeClass, the pod
// annotations and how templates and images scale per node.
//
// # Errors
//
// errdefs.ErrInvalid: a bad id, config.json or annotation.
// errdefs.ErrNotSupported: what this runtime does not do (systemd
// cgroups, joining a user namespace, exec into a user namespace, time
// namespaces, idmapped mounts, fork boot). errdefs.ErrConflict:
// an id in use, a transition the state refuses. errdefs.ErrNotFound: a
// container that "does not exist", a signal to one "not running" (the
// shim matches these words). Others carry the failing step of the init
// ("rootfs: mount /proc (proc): ...").
package oci
