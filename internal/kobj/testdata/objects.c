#define _GNU_SOURCE
/* A process holding one of every object package kobj re-creates. It
 * prints "ready" and then answers one command byte per line on stdin:
 *   e  read the eventfd (fd 10)       s  read the semaphore eventfd (fd 11)
 *   p  read the pipe (fd 12)          w  epoll_wait on fd 15, no timeout
 *   n  epoll_wait on the nested epoll fd 16
 *   m  print the shared memory        t  timerfd_gettime on fd 14
 *   g  raise SIGUSR1 (blocked), read it from the signalfd (fd 17)
 *   i  print the inodes of fds 10-17 and of the shared memory
 *   E  add 1 to the eventfd          P  write "Z" to the pipe
 *   M  overwrite the shared memory   T  disarm the timer
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <fcntl.h>

#ifndef FIRST_CLOSED
#define FIRST_CLOSED 3 /* sfork's test keeps its fork channel, fd 3 */
#endif

static void at(int fd, int want) { if (fd != want) { dup2(fd, want); close(fd); } }

int main(void) {
	setvbuf(stdout, NULL, _IONBF, 0);
	close_range(FIRST_CLOSED, ~0U, 0); /* whatever the test's environment leaked to us */
	at(eventfd(5, EFD_NONBLOCK | EFD_CLOEXEC), 10);
	at(eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK), 11);
	int p[2];
	pipe2(p, O_NONBLOCK);
	at(p[0], 12);
	at(p[1], 13);
	write(13, "hello", 5);
	at(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), 14);
	struct itimerspec its = {{7, 0}, {100, 0}};
	timerfd_settime(14, 0, &its, NULL);
	at(epoll_create1(EPOLL_CLOEXEC), 15);
	struct epoll_event ev = {EPOLLIN, {.u64 = 0x1010}};
	epoll_ctl(15, EPOLL_CTL_ADD, 10, &ev);
	ev.events = EPOLLIN | EPOLLET; ev.data.u64 = 0x1212;
	epoll_ctl(15, EPOLL_CTL_ADD, 12, &ev);
	at(epoll_create1(0), 16);
	ev.events = EPOLLIN; ev.data.u64 = 0x1515;
	epoll_ctl(16, EPOLL_CTL_ADD, 15, &ev);
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	sigprocmask(SIG_BLOCK, &m, NULL);
	at(signalfd(-1, &m, SFD_NONBLOCK), 17);
	dup2(10, 20); /* a second descriptor of the eventfd's description */
#ifdef NO_SHM /* images do not carry shared memory: a private stand-in */
	char *shm = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
#else
	char *shm = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
#endif
	strcpy(shm, "shared-page-one");
	strcpy(shm + 4096, "shared-page-two");
	printf("ready %p\n", shm);
	char c;
	while (read(0, &c, 1) == 1) {
		uint64_t v = 0;
		char buf[64] = {0};
		struct epoll_event out[4];
		switch (c) {
		case 'e': { int n = read(10, &v, 8); printf("e %d %llu\n", n, (unsigned long long)v); break; }
		case 's': { int n = read(11, &v, 8); printf("s %d %llu\n", n, (unsigned long long)v); break; }
		case 'p': { int n = read(12, buf, sizeof buf - 1); printf("p %d %s\n", n, buf); break; }
		case 'w': case 'n': {
			int n = epoll_wait(c == 'w' ? 15 : 16, out, 4, 0);
			printf("%c %d", c, n);
			for (int i = 0; i < n; i++) printf(" %llx", (unsigned long long)out[i].data.u64);
			printf("\n");
			break;
		}
		case 'm': printf("m %s %s\n", shm, shm + 4096); break;
		case 't': {
			struct itimerspec cur;
			timerfd_gettime(14, &cur);
			printf("t %lld %lld\n", (long long)cur.it_value.tv_sec, (long long)cur.it_interval.tv_sec);
			break;
		}
		case 'g': {
			struct signalfd_siginfo si;
			raise(SIGUSR1);
			int n = read(17, &si, sizeof si);
			printf("g %d %u\n", n, n > 0 ? si.ssi_signo : 0);
			break;
		}
		case 'i': {
			struct stat st;
			printf("i");
			for (int fd = 10; fd <= 17; fd++) { fstat(fd, &st); printf(" %lu", (unsigned long)st.st_ino); }
			printf(" flags20=%d\n", fcntl(20, F_GETFD));
			break;
		}
		case 'E': v = 1; printf("E %d\n", (int)write(10, &v, 8)); break;
		case 'P': printf("P %d\n", (int)write(13, "Z", 1)); break;
		case 'M': strcpy(shm, "child-wrote"); printf("M\n"); break;
		case 'T': {
			struct itimerspec off = {{0, 0}, {0, 0}};
			printf("T %d\n", timerfd_settime(14, 0, &off, NULL));
			break;
		}
		case 'q': return 0;
		}
	}
	return 0;
}
