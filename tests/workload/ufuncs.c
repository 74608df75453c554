// SPDX-License-Identifier: Apache-2.0
/* User-space functions with exact, known calls, for the uprobe and usdt tests. Built
 * dynamically linked (libc's malloc is a library function to trace), with -g -O0 (DWARF
 * for argument names and types; f is never inlined).
 *
 *   ufuncs f N        calls f(a, b, s) N times, for i = 0..N-1:
 *                     a = i - 2, b = -1000000000000 * i + 7, s = "s-<i>", except that the
 *                     last call's s is 300 'x' (longer than the default string size);
 *                     f returns 2 * a - 1
 *   ufuncs fstay N    the same, then stays 1 s before exiting (a tracer reads /proc/PID
 *                     for the user stacks of --stack while the process lives)
 *   ufuncs malloc K   K malloc(100000 + i) for i = 0..K-1, each freed at once (and nothing
 *                     else of its own that allocates: no stdio)
 *   ufuncs usdt N     the USDT probe btrace_test:tick(i, -i - 1, 1000000 * i) fired N times
 *   ufuncs loop N     calls f(1, 2, "s") N times flat out; writes the ns per call to the
 *                     file $UFUNCS_TIME_FILE if set (make bench)
 *   ufuncs wait CMD.. waits until stdin is readable (poll, no read), then runs CMD
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sdt.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) int f(int a, long b, const char *s)
{
	/* Something the compiler cannot drop. */
	__asm__ volatile("" : : "r"(b), "r"(s) : "memory");
	return 2 * a - 1;
}

static void fmt_index(char *buf, long i)
{
	char digits[24];
	int n = 0;

	memcpy(buf, "s-", 2);
	do {
		digits[n++] = '0' + i % 10;
		i /= 10;
	} while (i);
	for (int k = 0; k < n; k++)
		buf[2 + k] = digits[n - 1 - k];
	buf[2 + n] = 0;
}

static int do_f(long n)
{
	static char longs[301];
	char buf[32];
	int sum = 0;

	memset(longs, 'x', 300);
	for (long i = 0; i < n; i++) {
		fmt_index(buf, i);
		sum += f((int)(i - 2), -1000000000000L * i + 7, i == n - 1 ? longs : buf);
	}
	return sum == 12345678 ? 3 : 0;
}

static int do_malloc(long k)
{
	for (long i = 0; i < k; i++) {
		void *volatile p = malloc(100000 + i);

		if (!p)
			return 1;
		free(p);
	}
	return 0;
}

static int do_usdt(long n)
{
	for (long i = 0; i < n; i++) {
		long neg = -i - 1, big = 1000000L * i;

		STAP_PROBE3(btrace_test, tick, i, neg, big);
	}
	return 0;
}

static int do_loop(long n)
{
	const char *file = getenv("UFUNCS_TIME_FILE");
	struct timespec a, b;
	char out[64];
	int fd, len;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		f(1, 2, "s");
	clock_gettime(CLOCK_MONOTONIC, &b);
	if (!file || n <= 0)
		return 0;
	len = snprintf(out, sizeof(out), "%.1f\n",
		       ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, out, len) != len)
		return 1;
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	long n = argc > 2 ? atol(argv[2]) : 0;

	if (argc > 1 && !strcmp(argv[1], "wait")) {
		struct pollfd p = { .fd = 0, .events = POLLIN };

		poll(&p, 1, -1);
		argv += 1;
		argc -= 1;
		n = argc > 2 ? atol(argv[2]) : 0;
	}
	if (argc == 3 && !strcmp(argv[1], "f"))
		return do_f(n);
	if (argc == 3 && !strcmp(argv[1], "fstay")) {
		int rc = do_f(n);

		sleep(1);
		return rc;
	}
	if (argc == 3 && !strcmp(argv[1], "malloc"))
		return do_malloc(n);
	if (argc == 3 && !strcmp(argv[1], "loop"))
		return do_loop(n);
	if (argc == 3 && !strcmp(argv[1], "usdt"))
		return do_usdt(n);
	return 2;
}
