// SPDX-License-Identifier: Apache-2.0
/* Workloads with known stacks for `btrace profile`, `btrace offcpu` and `--stack`: every
 * function named below is a real, symbol-carrying function (built with frame pointers and
 * debug info, see the Makefile), and each makes its syscalls itself (inline `syscall`
 * instructions on x86-64, `svc 0` on arm64), so the user stack at a syscall starts in that function: a libc wrapper
 * built without frame pointers would hide its caller from a frame-pointer walk.
 *
 *   stackload burn MS             one thread burns MS ms of CPU: 70 % in burn_hot (most of
 *                                 it in the inlined hot_step), 30 % in burn_cold, in rounds
 *                                 of 2 to 17 ms of thread CPU time
 *   stackload work N              N rounds of fixed work (fixed_work): run time, not CPU
 *                                 time, is the measure (bench)
 *   stackload block N MS          N sleeps of MS ms, each in block_here
 *   stackload open DIR K [MS]     K openat(2) of DIR/stackload-<i> (created), from open_here;
 *                                 then lives MS ms more (block_here)
 *   stackload burn-exit MS        unlinks its own executable, burns MS ms of CPU in
 *                                 exiting_burn, exits
 *   stackload spawn-exit EXE MS WAIT_MS
 *                                 runs `EXE burn-exit MS` in a child, waits for it, then
 *                                 sleeps WAIT_MS ms (block_here) and exits
 *   stackload storm N MS SLEEPS   a fork storm: N short children, two at a time, child i
 *                                 descending i % 61 frames of storm_descend (a stack of its
 *                                 own), then burning MS ms of CPU in burn_hot and sleeping
 *                                 5 ms SLEEPS times in block_here; exits 0 when every child
 *                                 did
 *
 * With $STACKLOAD_CPU_FILE set, burn and burn-exit write the process's CPU time in
 * nanoseconds there (CLOCK_PROCESS_CPUTIME_ID) when they end; with $STACKLOAD_BLOCK_FILE
 * set, block writes the wall time its sleeps took, in nanoseconds (CLOCK_MONOTONIC around
 * each: the sleep, its wakeup and the wait for a CPU after it); with
 * $STACKLOAD_SWITCH_FILE set, storm writes there how many times its children left their
 * CPU blocked, by the kernel's own count (each child's voluntary context switches, read
 * with getrusage just before it exits): a sleep whose timer fires while the child waits
 * for a CPU on a busy machine returns without blocking, so the sleeps alone do not say.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* One syscall with up to four arguments, made right here (inlined into the caller). The
 * numbers are the architecture's own (<sys/syscall.h>). */
static inline __attribute__((always_inline)) long sys4(long nr, long a, long b, long c, long d)
{
#if defined(__x86_64__)
	long ret;
	register long r10 __asm__("r10") = d;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;

	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
	return x0;
#else
#error "stackload: no inline syscall for this architecture"
#endif
}

static inline __attribute__((always_inline)) long thread_cpu_ns(void)
{
	struct timespec ts;

	sys4(SYS_clock_gettime, CLOCK_THREAD_CPUTIME_ID, (long)&ts, 0, 0);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static volatile unsigned long sink;

/* Inlined into burn_hot: DWARF names it as an inlined frame. */
static inline __attribute__((always_inline)) unsigned long hot_step(unsigned long x)
{
	for (int i = 0; i < 64; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	return x;
}

__attribute__((noinline)) void burn_hot(long ns)
{
	long until = thread_cpu_ns() + ns;
	unsigned long x = sink;

	do {
		for (int i = 0; i < 256; i++)
			x = hot_step(x);
	} while (thread_cpu_ns() < until);
	sink = x;
}

__attribute__((noinline)) void burn_cold(long ns)
{
	long until = thread_cpu_ns() + ns;
	unsigned long x = sink;

	do {
		for (int i = 0; i < 256 * 64; i++)
			x = x * 2862933555777941757UL + 3037000493UL;
	} while (thread_cpu_ns() < until);
	sink = x;
}

__attribute__((noinline)) void exiting_burn(long ns)
{
	long until = thread_cpu_ns() + ns;
	unsigned long x = sink;

	do {
		for (int i = 0; i < 256 * 64; i++)
			x = x * 6364136223846793005UL + 1UL;
	} while (thread_cpu_ns() < until);
	sink = x;
}

__attribute__((noinline)) void block_here(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	sys4(SYS_nanosleep, (long)&ts, 0, 0, 0);
}

__attribute__((noinline)) int open_here(const char *path)
{
	return (int)sys4(SYS_openat, AT_FDCWD, (long)path, O_CREAT | O_WRONLY, 0600);
}

static void write_cpu(void)
{
	const char *f = getenv("STACKLOAD_CPU_FILE");
	struct timespec ts;
	FILE *out;

	if (!f)
		return;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	out = fopen(f, "w");
	if (!out)
		return;
	fprintf(out, "%ld\n", ts.tv_sec * 1000000000L + ts.tv_nsec);
	fclose(out);
}

static int do_burn(long ms)
{
	/* Rounds of 2 to 17 ms of thread CPU time (7/10 hot, 3/10 cold), their lengths
	 * pseudo-random: rounds of one fixed length alias with a sampling period near it
	 * (10 ms rounds against 99 Hz put whole runs of samples in one function). */
	unsigned long seed = 12345;

	for (long done = 0; done < ms * 1000000L;) {
		long round;

		seed = seed * 6364136223846793005UL + 1442695040888963407UL;
		round = 2000000L + (long)((seed >> 33) % 15000000UL);
		burn_hot(round / 10 * 7);
		burn_cold(round / 10 * 3);
		done += round;
	}
	write_cpu();
	return 0;
}

/* A fixed amount of work (for overhead measurements: its run time grows with what
 * sampling costs it). */
__attribute__((noinline)) void fixed_work(long rounds)
{
	unsigned long x = sink;

	for (long r = 0; r < rounds; r++)
		for (int i = 0; i < 256; i++)
			x = hot_step(x);
	sink = x;
}

static long mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static int do_block(long n, long ms)
{
	const char *f = getenv("STACKLOAD_BLOCK_FILE");
	long total = 0;
	FILE *out;

	for (long i = 0; i < n; i++) {
		long t0 = mono_ns();

		block_here(ms);
		total += mono_ns() - t0;
	}
	if (f && (out = fopen(f, "w"))) {
		fprintf(out, "%ld\n", total);
		fclose(out);
	}
	return 0;
}

static int do_open(const char *dir, long k)
{
	char path[4096];

	for (long i = 0; i < k; i++) {
		snprintf(path, sizeof(path), "%s/stackload-%ld", dir, i);
		int fd = open_here(path);
		if (fd < 0)
			return 1;
		close(fd);
	}
	return 0;
}

static int do_burn_exit(long ms)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0)
		return 1;
	self[n] = 0;
	if (unlink(self))
		return 1;
	exiting_burn(ms * 1000000L);
	write_cpu();
	return 0;
}

static int do_spawn_exit(const char *exe, const char *ms, long wait_ms)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return 1;
	if (pid == 0) {
		execl(exe, exe, "burn-exit", ms, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		return 1;
	block_here(wait_ms);
	return 0;
}

/* Depth frames of itself, then the child's work: every depth is a distinct stack. */
__attribute__((noinline)) void storm_descend(int depth, long ms, long sleeps)
{
	if (depth > 0) {
		storm_descend(depth - 1, ms, sleeps);
		sink++; /* not a tail call: the frame stays */
		return;
	}
	if (ms > 0)
		burn_hot(ms * 1000000L);
	/* 5 ms: long enough that the timer never fires before the task is off its CPU (a
	 * sleep that never blocked would be no block for offcpu). */
	for (long i = 0; i < sleeps; i++)
		block_here(5);
}

static int do_storm(long n, long ms, long sleeps)
{
	const char *f = getenv("STACKLOAD_SWITCH_FILE");
	/* The children's count of voluntary switches, shared with them. */
	long *switches = mmap(NULL, sizeof(long), PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int failed = 0;
	FILE *out;

	if (switches == MAP_FAILED)
		return 1;
	*switches = 0;

	for (long i = 0; i < n; i += 2) {
		pid_t kids[2] = { -1, -1 };

		for (int k = 0; k < 2 && i + k < n; k++) {
			kids[k] = fork();
			if (kids[k] < 0)
				return 1;
			if (kids[k] == 0) {
				struct rusage ru;

				storm_descend((int)((i + k) % 61), ms, sleeps);
				/* The child's first touch of the shared page faults (a fork
				 * does not copy a shared mapping's page tables), and the
				 * fault may wait for the page's lock while the other child
				 * holds it: a block, so before the count is read. */
				__atomic_add_fetch(switches, 0, __ATOMIC_SEQ_CST);
				getrusage(RUSAGE_SELF, &ru);
				__atomic_add_fetch(switches, ru.ru_nvcsw, __ATOMIC_SEQ_CST);
				_exit(0);
			}
		}
		for (int k = 0; k < 2; k++) {
			int status;

			if (kids[k] > 0 &&
			    (waitpid(kids[k], &status, 0) != kids[k] || !WIFEXITED(status) ||
			     WEXITSTATUS(status)))
				failed = 1;
		}
	}
	if (f && (out = fopen(f, "w"))) {
		fprintf(out, "%ld\n", *switches);
		fclose(out);
	}
	return failed;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "burn"))
		return do_burn(atol(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "work")) {
		fixed_work(atol(argv[2]));
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "block"))
		return do_block(atol(argv[2]), atol(argv[3]));
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "open")) {
		int r = do_open(argv[2], atol(argv[3]));

		if (argc == 5)
			block_here(atol(argv[4]));
		return r;
	}
	if (argc == 3 && !strcmp(argv[1], "burn-exit"))
		return do_burn_exit(atol(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "spawn-exit"))
		return do_spawn_exit(argv[2], argv[3], atol(argv[4]));
	if (argc == 5 && !strcmp(argv[1], "storm"))
		return do_storm(atol(argv[2]), atol(argv[3]), atol(argv[4]));
	fprintf(stderr, "usage: stackload burn MS | work N | block N MS | open DIR K [MS] | burn-exit MS | "
			"spawn-exit EXE MS WAIT_MS | storm N MS SLEEPS\n");
	return 2;
}
