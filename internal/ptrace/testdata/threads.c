/* threads.c: a multi-threaded victim for the ptrace thread-group tests.
 * Two threads besides main, each with state of its own: thread 1 blocks
 * SIGUSR1 and has an alternate signal stack, thread 2 blocks SIGUSR2 and
 * drops CAP_SYS_TIME from its effective set; they are named worker0 and
 * worker1.
 * Prints "ready <altstack address> <tid1> <tid2>" once both are set up,
 * then main echoes each line it reads until EOF ("q" exits). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

static char altstack[65536];
static pid_t tids[2];
static pthread_barrier_t ready;

static void *worker(void *arg)
{
	long n = (long)arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, n == 0 ? SIGUSR1 : SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	char name[16];
	snprintf(name, sizeof name, "worker%ld", n);
	pthread_setname_np(pthread_self(), name);
	if (n == 1) {
		struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
		struct __user_cap_data_struct d[2];
		if (syscall(SYS_capget, &h, d) == 0) {
			d[0].effective &= ~(1u << CAP_SYS_TIME);
			syscall(SYS_capset, &h, d);
		}
	}
	if (n == 0) {
		stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
		sigaltstack(&ss, NULL);
	}
	tids[n] = syscall(SYS_gettid);
	pthread_barrier_wait(&ready);
	for (;;)
		pause();
	return NULL;
}

int main(void)
{
	pthread_t th[2];
	char line[256];
	pthread_barrier_init(&ready, NULL, 3);
	for (long i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, worker, (void *)i);
	pthread_barrier_wait(&ready);
	printf("ready %p %d %d\n", (void *)altstack, tids[0], tids[1]);
	fflush(stdout);
	while (fgets(line, sizeof line, stdin)) {
		if (line[0] == 'q')
			exit(0);
		printf("echo %s", line);
		fflush(stdout);
	}
	return 0;
}
