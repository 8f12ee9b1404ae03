// Package sandboxinit is the in-sandbox side of a sandbox: the init
// helper, the daemon binary re-executed by the host (package sandbox)
// inside the sandbox's new namespaces. It builds the sandbox from inside
// and then becomes the sandboxed program by execve (or, for an env's
// holder, the pause binary). It makes no decision of its own: defaults,
// policy lists and the compiled seccomp program all come from the host.
//
// # Contract
//
// The wire is package initwire: fds, the Config the host sends, the
// report stream the helper writes. The host has already:
//
//   - cloned the helper into its namespaces (PID, mount, UTS, IPC; network
//     unless NetworkHost; user for a sandbox of its own user namespace; an
//     env holder gets no PID namespace, and one in a template's user
//     namespace is started by nsenter, which joins it first), with the
//     parent-death signal SIGKILL;
//   - put it in the sandbox's cgroup (born there on cgroup v2), so every
//     page it and the program touch is charged there;
//   - for Config.Prepared, mounted the overlay and binds on Dir/merged in
//     its own mount namespace (a helper in a user namespace cannot:
//     locked submounts), of which the helper holds a copy.
//
// The helper reports a mark after each step (named as below), then, on
// success, nothing: the status pipe closes at execve; an env holder
// reports ready instead. A failed step is one *initwire.InitError (its
// Step, its errno), after which the helper exits 127.
//
// # Steps, in order (Main; its OS thread locked throughout, the main one)
//
//  1. config: read the Config (the host sends it once the helper is in
//     its cgroup); unshare a cgroup namespace, rooted at that cgroup.
//  2. rootfs (buildRootfs): make / rprivate; mount the instance tmpfs and
//     overlay and the binds (read-only by remount), or bind the host's
//     prepared copy onto itself; /proc (not an env: its joiner mounts
//     one), /dev (tmpfs, device binds, devpts, shm, symlinks), /tmp;
//     /sys read-only; pivot_root(".", ".") and detach the old root; the
//     masked paths, then the read-only ones.
//  3. net: sethostname; lo up in a network namespace of its own.
//  4. An env's holder: drop every capability, report ready, exec the pause
//     binary from a memfd (see package sandbox, "Envs"). Otherwise:
//  5. process: report ready (the env is built: a prestarted sandbox waits
//     here), read the Process and its files, and put them on 1 (Stdout),
//     2 (Stderr), 3, 4, ... (the extra files), first lifting the helper's
//     own fds above those numbers.
//  6. security: rlimits; chdir Cwd; capabilities (bounding, permitted and
//     effective = Caps, plus CAP_SYS_ADMIN in bounding and permitted for a
//     template; inheritable and ambient empty); no_new_privs; seccomp;
//     every fd from 3+NExtra marked close-on-exec.
//  7. exec: execve(Argv, Env).
//
// The mount building blocks (MountOverlay, BindAll, MaskPath, ...) are
// exported for the host, which builds prepared roots with them, and for
// the OCI runtime: both isolate as the helper does.
package sandboxinit
