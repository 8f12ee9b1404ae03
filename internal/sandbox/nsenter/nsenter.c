/*
 * nsenter.c: the first program an env holder runs (package sandbox).
 *
 * A Go process cannot join a user namespace (setns(CLONE_NEWUSER) needs a
 * single-threaded caller, and the Go runtime has started threads before
 * main), so the daemon execs this freestanding static program instead,
 * which joins the function's user namespace, becomes root there, makes
 * the env's other namespaces (owned by that user namespace) and then
 * execs the daemon binary as the holder:
 *
 *   nsenter USERNS_FD EXE_FD UNSHARE_FLAGS ARGV0 [ARGS...]
 *
 *   1. setns(USERNS_FD, CLONE_NEWUSER); close(USERNS_FD)
 *   2. setgroups(0, NULL); setresgid(0, 0, 0); setresuid(0, 0, 0): uid and
 *      gid 0 of the namespace (host root is unmapped there, and execve
 *      gives capabilities only to the namespace's root)
 *   3. unshare(UNSHARE_FLAGS) (decimal)
 *   4. execveat(EXE_FD, "", ARGV0..., envp, AT_EMPTY_PATH) with EXE_FD
 *      close-on-exec: an fd, not a path, since the binary's directories
 *      need not be searchable by the namespace's root.
 *
 * Any failure exits with 120 + the step number; the daemon sees the exit
 * (the holder's status pipe closes without a report). No libc, no data:
 * build.sh checks that only code is linked.
 */

typedef long s64;

#define SYS_close 3
#define SYS_fcntl 72
#define SYS_exit_group 231
#define SYS_setresuid 117
#define SYS_setresgid 119
#define SYS_setgroups 116
#define SYS_unshare 272
#define SYS_setns 308
#define SYS_execveat 322
#define SYS_pause 34

#define CLONE_NEWUSER 0x10000000
#define AT_EMPTY_PATH 0x1000
#define F_SETFD 2
#define FD_CLOEXEC 1

static inline s64 sys6(s64 n, s64 a, s64 b, s64 c, s64 d, s64 e, s64 f)
{
	s64 ret;
	register s64 r10 __asm__("r10") = d;
	register s64 r8 __asm__("r8") = e;
	register s64 r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

static __attribute__((noreturn)) void die(int step)
{
	for (;;)
		sys6(SYS_exit_group, 120 + step, 0, 0, 0, 0, 0);
}

/* dec parses a non-negative decimal; -1 on anything else. */
static s64 dec(const char *s)
{
	s64 v = 0;
	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (1L << 40))
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v;
}

__attribute__((used, noreturn)) void start_c(s64 *sp)
{
	s64 argc = sp[0];
	char **argv = (char **)(sp + 1);
	char **envp = argv + argc + 1;
	s64 userns, exe, flags;

	if (argc < 5)
		die(0);
	userns = dec(argv[1]);
	exe = dec(argv[2]);
	flags = dec(argv[3]);
	if (userns < 0 || exe < 0 || flags < 0)
		die(0);
	if (sys6(SYS_setns, userns, CLONE_NEWUSER, 0, 0, 0, 0) != 0)
		die(1);
	sys6(SYS_close, userns, 0, 0, 0, 0, 0);
	if (sys6(SYS_setgroups, 0, 0, 0, 0, 0, 0) != 0 ||
	    sys6(SYS_setresgid, 0, 0, 0, 0, 0, 0) != 0 ||
	    sys6(SYS_setresuid, 0, 0, 0, 0, 0, 0) != 0)
		die(2);
	if (flags && sys6(SYS_unshare, flags, 0, 0, 0, 0, 0) != 0)
		die(3);
	if (sys6(SYS_fcntl, exe, F_SETFD, FD_CLOEXEC, 0, 0, 0) != 0)
		die(4);
	sys6(SYS_execveat, exe, (s64) "", (s64)(argv + 4), (s64)envp, AT_EMPTY_PATH, 0);
	die(4);
}

/* The kernel enters with rsp at argc; align the stack for the C code. */
__asm__(".section .text.start,\"ax\"\n"
	".globl _start\n"
	"_start:\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call start_c\n"
	"	hlt\n");
