// Package seccomp compiles seccomp profiles to classic BPF in pure Go (no
// cgo, no libseccomp) and installs them.
//
// DefaultProgram resolves moby's default profile (the one Docker applies)
// for amd64, the running kernel and the capabilities the process will hold,
// and compiles it. Compile is the general compiler from a runtime-spec
// LinuxSeccomp; Install loads a program on the calling OS thread.
//
// # Program shape
//
//  1. The architecture: anything other than AUDIT_ARCH_X86_64 (i386 through
//     int 0x80, ...) and any x32 syscall (nr with bit 30 set, nr -1 aside)
//     returns BadArchAction (SECCOMP_RET_KILL_PROCESS). The profile's
//     x86/x32 sub-architectures are never allowed: there are no tables for
//     them, and a foreign ABI must not be allowed by accident.
//  2. A binary search over the syscall number, on runs of numbers that share
//     one outcome; numbers no rule names get the profile's default action.
//  3. Per syscall: its conditional rules in profile order, first match wins,
//     then its unconditional action, else the default action.
//
// Jumps farther than 255 instructions go through BPF_JA trampolines; a
// program beyond the kernel's 4096 instructions is an error.
//
// # Semantics
//
// Names are resolved with the x86_64 table generated from
// golang.org/x/sys/unix (SyscallNumber); unknown names in a profile are
// skipped, as libseccomp does (UnknownNames lists them). Conditions within
// one rule are ANDed; when a rule names one argument twice each condition
// becomes its own rule (ORed), as runc does. Arguments are compared as full
// 64-bit unsigned values, in two 32-bit halves. SCMP_CMP_MASKED_EQ is
// (arg & value) == valueTwo. ERRNO without errnoRet returns EPERM. Two
// unconditional rules with different actions for one syscall are an error.
//
// Options.Trace names syscalls whose denials (ERRNO, KILL*, TRAP, and the
// default action) become SECCOMP_RET_TRACE, with the errno the profile
// would have returned as trace data (0 where it would have killed); their
// allowed cases stay allowed. Without a tracer the kernel fails such a
// call with ENOSYS.
//
// # Errors
//
// errdefs.ErrInvalid: a malformed profile (unknown action or operator,
// argument index > 5, errnoRet out of range or on an action without data,
// a name in Options.Trace the table does not know) or a program the kernel
// refuses. errdefs.ErrNotSupported: SCMP_ACT_NOTIFY, listener or flags
// fields, a profile without x86_64, a non-amd64 host, a kernel without
// seccomp.
package seccomp
