// SPDX-License-Identifier: GPL-2.0
/* Test workload with exact, known syscall counts. Built static (no dynamic loader doing
 * its own reads), so the only syscalls are the few of process start-up and these.
 *
 *   workload [--wait] COMMAND ARGS
 *   --wait: first block until stdin is readable (poll, no read: read counts stay exact),
 *   so a test can learn what btrace has loaded before the workload runs.
 *
 *   workload syscalls N M         N getppid and M read(2) of 1 byte from /dev/zero
 *   workload block T MS           T threads, each blocked MS ms in one nanosleep
 *   workload spread N             one thread per CPU, pinned, N getppid in total
 *   workload open DIR K           open (create) K files DIR/btrace-K-<pid>-<i>, close each
 *   workload loop N               N getppid in a tight loop; prints the ns per call
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long arg(char **argv, int i)
{
	return strtol(argv[i], NULL, 10);
}

static int do_syscalls(long n, long m)
{
	char c;
	int fd = open("/dev/zero", O_RDONLY);

	if (fd < 0)
		return 1;
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	for (long i = 0; i < m; i++)
		if (syscall(SYS_read, fd, &c, 1) != 1)
			return 1;
	return 0;
}

static long block_ms;

static void *blocker(void *unused)
{
	struct timespec ts = { block_ms / 1000, (block_ms % 1000) * 1000000L };

	(void)unused;
	syscall(SYS_nanosleep, &ts, NULL);
	return NULL;
}

static int do_block(long threads, long ms)
{
	pthread_t t[1024];

	if (threads > 1024)
		threads = 1024;
	block_ms = ms;
	for (long i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, blocker, NULL);
	for (long i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	return 0;
}

struct share {
	int cpu;
	long calls;
};

static void *spinner(void *p)
{
	struct share *s = p;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(s->cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
	for (long i = 0; i < s->calls; i++)
		syscall(SYS_getppid);
	return NULL;
}

static int do_spread(long n)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	pthread_t t[256];
	struct share s[256];

	if (cpus > 256)
		cpus = 256;
	for (long i = 0; i < cpus; i++) {
		s[i].cpu = i;
		s[i].calls = n / cpus + (i < n % cpus);
		pthread_create(&t[i], NULL, spinner, &s[i]);
	}
	for (long i = 0; i < cpus; i++)
		pthread_join(t[i], NULL);
	return 0;
}

static int do_open(const char *dir, long k)
{
	char path[4096];

	for (long i = 0; i < k; i++) {
		snprintf(path, sizeof(path), "%s/btrace-%ld-%d-%ld", dir, k, getpid(), i);
		int fd = open(path, O_CREAT | O_WRONLY, 0600);
		if (fd < 0)
			return 1;
		close(fd);
	}
	return 0;
}

static int do_loop(long n)
{
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc > 1 && !strcmp(argv[1], "--wait")) {
		struct pollfd p = { .fd = 0, .events = POLLIN };

		poll(&p, 1, -1);
		argv++;
		argc--;
	}
	cmd = argc > 1 ? argv[1] : "";
	if (!strcmp(cmd, "syscalls") && argc == 4)
		return do_syscalls(arg(argv, 2), arg(argv, 3));
	if (!strcmp(cmd, "block") && argc == 4)
		return do_block(arg(argv, 2), arg(argv, 3));
	if (!strcmp(cmd, "spread") && argc == 3)
		return do_spread(arg(argv, 2));
	if (!strcmp(cmd, "loop") && argc == 3)
		return do_loop(arg(argv, 2));
	if (!strcmp(cmd, "open") && argc == 4)
		return do_open(argv[2], arg(argv, 3));
	fprintf(stderr, "usage: workload [--wait] syscalls N M | block T MS | spread N | open DIR K | loop N\n");
	return 2;
}
