/* Victim processes for the ptrace tests (built by the tests with gcc).
 *
 *   victim echo       loop: block in read(0), answer "pong <pid>\n" on fd 1
 *   victim xmm        loop: keep a value in xmm8 across a raw blocking
 *                     read(0) and answer "xmm8=<hex>\n" with what xmm8
 *                     holds after the read returns
 *   victim forkbench  for each number N read on stdin: N times fork(); the
 *                     child writes one byte on a pipe and exits; the
 *                     parent reads it and reaps the child; then "done\n"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void echo(void)
{
	char buf[256], out[64];
	for (;;) {
		ssize_t n = read(0, buf, sizeof buf);
		if (n <= 0)
			_exit(n < 0 ? 1 : 0);
		int m = snprintf(out, sizeof out, "pong %d\n", getpid());
		if (write(1, out, m) != m)
			_exit(2);
	}
}

static void xmm(void)
{
	unsigned long v = 0x1122334455667788UL;
	char buf[256], out[64];
	for (;;) {
		long n;
		unsigned long got;
		__asm__ volatile("movq %[v], %%xmm8\n\t"
				 "syscall\n\t"
				 "movq %%xmm8, %[got]\n\t"
				 : "=a"(n), [got] "=r"(got)
				 : "a"(0L), "D"(0L), "S"(buf), "d"(sizeof buf), [v] "r"(v)
				 : "rcx", "r11", "memory", "xmm8");
		if (n <= 0)
			_exit(n < 0 ? 1 : 0);
		v = got;
		int m = snprintf(out, sizeof out, "xmm8=%016lx\n", got);
		if (write(1, out, m) != m)
			_exit(2);
	}
}

static void forkbench(void)
{
	int p[2];
	long n;
	if (pipe(p) < 0)
		_exit(1);
	while (scanf("%ld", &n) == 1) {
		for (long i = 0; i < n; i++) {
			pid_t c = fork();
			if (c == 0) {
				(void)!write(p[1], "x", 1);
				_exit(0);
			}
			char x;
			if (c < 0 || read(p[0], &x, 1) != 1)
				_exit(3);
			waitpid(c, 0, 0);
		}
		printf("done\n");
		fflush(stdout);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 64;
	if (!strcmp(argv[1], "echo"))
		echo();
	else if (!strcmp(argv[1], "xmm"))
		xmm();
	else if (!strcmp(argv[1], "forkbench"))
		forkbench();
	return 64;
}
