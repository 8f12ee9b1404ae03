/* tickers.c: a template for the thread re-creation stress test. It
 * starts argv[1] ticker threads, each counting in ticks[i] and blocking
 * between counts in a different way (the ways a re-created thread resumes
 * differ): relative nanosleep and poll (ERESTART_RESTARTBLOCK, resumed
 * through restart_syscall), a timed condition variable wait (futex with
 * an absolute timeout), an absolute clock_nanosleep (ERESTARTNOHAND) and
 * a mutex handed between two threads (futex without a timeout).
 * A server thread answers each 'c' read on fd 0 (the template's own, or
 * a clone's) with "ok" on fd 1 once every ticker has ticked again, or
 * "stuck i j ..." naming those that did not within 10 s; 'q' exits.
 * The main thread prints "ready" once every ticker has ticked, then
 * sleeps for good in 1000 s sleeps: frozen there, its restart block (the
 * kernel's record of how to resume an interrupted relative sleep) holds a
 * sleep that ends in 1000 s, which every thread cloned from it inherits. */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAX 64
static volatile long ticks[MAX];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t baton = PTHREAD_MUTEX_INITIALIZER;

static void *tick(void *arg)
{
	long i = (long)arg;
	struct timespec ms = {0, 1000000};
	for (;;) {
		ticks[i]++;
		switch (i % 5) {
		case 0:
			nanosleep(&ms, NULL);
			break;
		case 1:
			poll(NULL, 0, 1);
			break;
		case 2: {
			struct timespec t;
			clock_gettime(CLOCK_REALTIME, &t);
			t.tv_nsec += 1000000;
			if (t.tv_nsec >= 1000000000) {
				t.tv_sec++;
				t.tv_nsec -= 1000000000;
			}
			pthread_mutex_lock(&mu);
			pthread_cond_timedwait(&cv, &mu, &t);
			pthread_mutex_unlock(&mu);
			break;
		}
		case 3: {
			struct timespec t;
			clock_gettime(CLOCK_MONOTONIC, &t);
			t.tv_nsec += 1000000;
			if (t.tv_nsec >= 1000000000) {
				t.tv_sec++;
				t.tv_nsec -= 1000000000;
			}
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
			break;
		}
		default:
			pthread_mutex_lock(&baton);
			nanosleep(&ms, NULL);
			pthread_mutex_unlock(&baton);
			sched_yield();
		}
	}
	return NULL;
}

static int all_moved(const long *from, int n, int report)
{
	int ok = 1;
	for (int i = 0; i < n; i++) {
		if (ticks[i] == from[i]) {
			if (report)
				printf(" %d", i);
			ok = 0;
		}
	}
	return ok;
}

static int n;

static void *serve(void *arg)
{
	long from[MAX];
	char c;
	while (read(0, &c, 1) == 1) {
		if (c == 'q')
			exit(0);
		if (c != 'c')
			continue;
		for (int i = 0; i < n; i++)
			from[i] = ticks[i];
		int waited = 0;
		while (!all_moved(from, n, 0) && waited < 10000) {
			usleep(1000);
			waited++;
		}
		if (all_moved(from, n, 0)) {
			printf("ok\n");
		} else {
			printf("stuck");
			all_moved(from, n, 1);
			printf("\n");
		}
	}
	exit(0);
	return arg;
}

int main(int argc, char **argv)
{
	long zero[MAX] = {0};
	n = argc > 1 ? atoi(argv[1]) : 4;
	if (n < 1 || n > MAX)
		return 2;
	for (long i = 0; i < n; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, tick, (void *)i) != 0)
			return 3;
	}
	while (!all_moved(zero, n, 0))
		usleep(1000);
	setvbuf(stdout, NULL, _IONBF, 0);
	pthread_t t;
	if (pthread_create(&t, NULL, serve, NULL) != 0)
		return 3;
	printf("ready\n");
	for (;;)
		sleep(1000);
}
