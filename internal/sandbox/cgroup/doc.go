// Package cgroup gives each sandbox instance its own cgroup, on cgroup v1
// (and hybrid hosts, whose v2 mount holds no controllers) and on cgroup v2,
// through github.com/containerd/cgroups/v3.
//
// A Group is <parent>/<name>, created in every hierarchy it needs: memory,
// pids, cpu and devices, and cpuacct and freezer when mounted, on v1; the
// unified tree on v2 (parent's subtree_control gains memory, pids and cpu;
// devices are an eBPF program). The parent is created on demand. Every
// group gets DeviceRules (runc's default: only the sandbox's own /dev nodes
// may be opened). Limits of 0 mean unlimited; CPUMillis 1000 is one CPU
// (CFS quota over a 100 ms period).
//
// Memory limits are real: on v1 memsw.limit_in_bytes is set to the limit
// when the kernel accounts swap, swappiness is 0 and oom_kill_disable 0, so
// a process exceeding the limit is OOM-killed (SIGKILL) rather than left
// hanging; on v2 memory.swap.max is 0 and memory.oom.group 1.
//
// On v2, New has the parent delegate the memory and pids controllers to
// the group even when no limit asks for them (Stats and OOMKilled read
// their files), and fails when it cannot: an OOM kill must never pass
// for a plain SIGKILL.
//
// Kill sends SIGKILL to every process and waits, bounded by KillTimeout,
// until the group is empty (v2: cgroup.kill when present; v1 and older v2:
// freeze, signal every pid, thaw, repeat). Delete kills, then removes every
// hierarchy's directory, and is idempotent. Sweep, for a restarted daemon,
// kills and deletes every group left under a parent, then the
// parent's directory itself.
//
// Errors: an invalid parent or name (empty, "/", ".", "..", a name with a
// slash) wraps errdefs.ErrInvalid; a host without cgroups or without a
// needed controller wraps errdefs.ErrNotSupported; a group already deleted
// wraps errdefs.ErrNotFound (except for Delete). Others carry the path and
// the underlying errno (e.g. EACCES when not root).
package cgroup
