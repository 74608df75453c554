// SPDX-License-Identifier: Apache-2.0
/* Test workload with exact, known syscall counts. Built static (no dynamic loader doing
 * its own reads), so the only syscalls are the few of process start-up and these.
 *
 *   workload [--wait] COMMAND ARGS
 *   --wait: first block until stdin is readable (poll, no read: read counts stay exact),
 *   so a test can learn what btrace has loaded before the workload runs.
 *
 *   workload syscalls N M         N getppid and M read(2) of 1 byte from /dev/zero
 *   workload getids N M           N getppid, then M getpgid(0) (kernel functions
 *                                 __x64_sys_getppid and __x64_sys_getpgid, on arm64
 *                                 __arm64_sys_getppid and __arm64_sys_getpgid: N and M calls)
 *   workload block T MS           T threads, each blocked MS ms in one nanosleep
 *   workload spread N             one thread per CPU, pinned, N getppid in total
 *   workload threads T N          T threads one after another (each joined before the
 *                                 next starts), each making N getppid
 *   workload open DIR K           open (create) K files DIR/btrace-K-<pid>-<i>, close each
 *   workload loop N               N getppid in a tight loop; prints the ns per call
 *   workload pace RATE SECS       RATE getppid per second (in 10 ms slices) for SECS seconds
 *   workload tcp-pair ADDR PORT HOLD_MS TX RX [SERVER_NETNS CLIENT_NETNS]
 *                                 listen on ADDR:PORT, connect to it, send exactly TX bytes
 *                                 client->server and RX bytes server->client (each side reads
 *                                 all), hold the connection HOLD_MS ms, then the client
 *                                 closes first and the server closes on end of file. With
 *                                 netns names (ip netns), the listener is made in the first
 *                                 namespace and the client in the second.
 *   workload tcp-many ADDR PORT N  N connections to ADDR:PORT, one after the other: connect,
 *                                 accept, server closes, client closes on end of file
 *   workload tcp-concurrent ADDR PORT N TX
 *                                 N connections open at once; each client sends TX bytes,
 *                                 then all clients close, then all servers on end of file
 *   workload tree N               a process tree of known shape, each member making known
 *                                 getppid calls: this process N, a child 2N, its child 3N,
 *                                 a double-forked daemon (re-parented) 4N, and a child that
 *                                 execs `workload syscalls 5N 0`: 15N in all. Returns once
 *                                 every member is done.
 *   workload unknown N            N calls of syscall number 1000, which no kernel has
 *                                 (each fails with ENOSYS)
 *   workload rate N R             N getppid paced at R calls per second (R 0: flat out);
 *                                 prints nothing (its stdout may be the tracer's); writes
 *                                 the seconds taken to $WORKLOAD_TIME_FILE if set
 *   workload bytes                write(2) to /dev/null exactly the 9 bytes
 *                                 "ab\0c\xff\n\\\"d" from a longer buffer (a NUL-terminated
 *                                 read would show more), then read(2) 4 bytes of /dev/zero
 *                                 into a buffer holding "XXXXXXXX"
 *   workload signed               lseek(fd of /dev/zero, -5, SEEK_CUR); timer_create on the
 *                                 process CPU clock (clockid -6) and timer_delete
 *   workload long-path LEN        openat a path of exactly LEN bytes ("/nonexistent-btrace/"
 *                                 then 'p's, ending in 'E'; it fails with ENOENT)
 *   workload exec-args N          execve("/proc/self/exe") with N arguments (N >= 6):
 *                                 "workload" "noop" "sp ace" "tab\tq\"uote\\" "\xff\x01" ""
 *                                 then "arg-6" ... "arg-<N-1>", environment "BTRACE_ENV=1"
 *   workload noop ...             nothing (the program exec-args runs)
 *   workload fsync PATH           create PATH, write 1 byte, fsync it, close
 *   workload exec-set             children exec, one after the other (each waited for):
 *                                 /proc/self/exe as "workload noop one two"; the missing
 *                                 /nonexistent-btrace/prog ("prog" "x"), which fails with
 *                                 ENOENT; "workload noop a1 ... a23" (25 arguments, more than
 *                                 btrace keeps); "workload noop" with one argument of 300
 *                                 'L's; and, from a second thread of a
 *                                 child, "workload noop from-thread"
 *   workload opens DIR K J        K files created in DIR, i = 0..K-1, by call i % 4: open
 *                                 DIR/f<i> O_WRONLY|O_CREAT|O_CLOEXEC 0640; openat O_RDWR|
 *                                 O_CREAT|O_TRUNC 0600; openat2 O_RDWR|O_CREAT|O_CLOEXEC 0644;
 *                                 creat 0644 (each closed); then J openat O_RDONLY of the
 *                                 missing DIR/missing-<j> (ENOENT). Where the architecture
 *                                 has no open(2) and creat(2) (arm64), those two are the
 *                                 openat calls its libc makes for them.
 *   workload direct DEV N SIZE    N writes then N reads of SIZE bytes (a multiple of 4096),
 *                                 O_DIRECT, at offsets 0, SIZE, 2*SIZE... of DEV
 *   workload wakeups N [NAME]     a child named NAME (default "wakee") sleeps 1 ms N times,
 *                                 then exits
 *   workload fails N              N openat of a missing file (ENOENT), N read(2) of fd -1
 *                                 (EBADF), N getppid (no error)
 *   For make bench (bench/classic_overhead.py), each printing the ns per operation:
 *   workload execs N              N children, one after the other, each fork + execve of
 *                                 /proc/self/exe as "workload noop", waited for
 *   workload openloop PATH N      N openat(PATH, O_RDONLY) + close
 *   workload dio DEV N            N O_DIRECT I/Os of 4 KiB on DEV, alternately a write and
 *                                 a read of the same block (blocks 0..255 in turn)
 *   workload pingpong N           N round trips of one byte between this process and a
 *                                 child over two pipes (each a wake-up and a switch each way)
 *   workload shortlived N MS      N children, one after the other (each waited for), each
 *                                 sleeping MS ms in one nanosleep, then exiting
 *   workload named NAME WHAT ARG  renames itself NAME (prctl PR_SET_NAME: any bytes, the
 *                                 kernel keeps 15), then a child (named so from its start)
 *                                 does WHAT: "open" openat(ARG) and close;
 *                                 "sleep" ARG nanosleeps of 1 ms; "burn" ARG ms of CPU;
 *                                 "exec" execve ARG (a path to this program, under any
 *                                 name) as "ARG noop NAME"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
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

static int do_getids(long n, long m)
{
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	for (long i = 0; i < m; i++)
		syscall(SYS_getpgid, 0);
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

static void *getppid_n(void *n)
{
	for (long i = 0; i < (long)n; i++)
		syscall(SYS_getppid);
	return NULL;
}

static int do_threads(long threads, long n)
{
	for (long i = 0; i < threads; i++) {
		pthread_t t;

		if (pthread_create(&t, NULL, getppid_n, (void *)n))
			return 1;
		pthread_join(t, NULL);
	}
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

/* ---- TCP ---- */

struct tcp_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	int family;
};

static int tcp_parse(const char *addr, long port, struct tcp_addr *a)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;

	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		a->len = sizeof(*in4);
	} else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		a->len = sizeof(*in6);
	} else {
		fprintf(stderr, "workload: bad address %s\n", addr);
		return -1;
	}
	a->family = a->ss.ss_family;
	return 0;
}

/* Enters the network namespace `name` (as made by `ip netns add`). */
static int enter_netns(const char *name)
{
	char path[256];
	int fd, rc;

	snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		perror(path);
		return -1;
	}
	rc = setns(fd, CLONE_NEWNET);
	close(fd);
	if (rc)
		perror("setns");
	return rc;
}

static int tcp_listener(const struct tcp_addr *a)
{
	int one = 1, fd = socket(a->family, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) || listen(fd, 128)) {
		perror("workload: bind/listen");
		close(fd);
		return -1;
	}
	return fd;
}

static int tcp_client(const struct tcp_addr *a)
{
	int fd = socket(a->family, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len)) {
		perror("workload: connect");
		close(fd);
		return -1;
	}
	return fd;
}

static int send_all(int fd, long n)
{
	char buf[4096];

	memset(buf, 'x', sizeof(buf));
	while (n > 0) {
		ssize_t w = write(fd, buf, n < (long)sizeof(buf) ? n : (long)sizeof(buf));
		if (w <= 0)
			return -1;
		n -= w;
	}
	return 0;
}

static int recv_exactly(int fd, long n)
{
	char buf[4096];

	while (n > 0) {
		ssize_t r = read(fd, buf, n < (long)sizeof(buf) ? n : (long)sizeof(buf));
		if (r <= 0)
			return -1;
		n -= r;
	}
	return 0;
}

/* Waits for end of file (the peer's FIN), then closes. */
static int close_after_eof(int fd)
{
	char c;
	ssize_t r = read(fd, &c, 1);

	close(fd);
	return r == 0 ? 0 : -1;
}

/* Whether a /proc/net/tcp{,6} address field ("0100007F:9C40") has port `port`. */
static int addr_has_port(const char *field, long port)
{
	const char *colon = strrchr(field, ':');

	return colon && strtol(colon + 1, NULL, 16) == port;
}

/* Returns once no socket with `port` at either end is still closing (up to 5 s): the
 * last transitions of a closed connection (the final ACK, the peer's FIN) are handled in
 * softirq and may come after close() returns, and a tracer that stops when this process
 * exits must see them. Only a listener and TIME_WAIT remnants (already past CLOSE) may
 * remain. Reads /proc, so syscall counts of this command are not exact. */
static void settle_port(long port)
{
	static const char *const files[] = { "/proc/net/tcp", "/proc/net/tcp6" };
	struct timespec tick = { 0, 10 * 1000000L };
	char line[512], local[128], remote[128];
	unsigned int state;

	for (int tries = 0; tries < 500; tries++) {
		int closing = 0;

		for (int f = 0; f < 2; f++) {
			FILE *fp = fopen(files[f], "r");

			if (!fp)
				continue;
			while (fgets(line, sizeof(line), fp))
				if (sscanf(line, "%*s %127s %127s %x", local, remote, &state) == 3 &&
				    (addr_has_port(local, port) || addr_has_port(remote, port)) &&
				    state != 0x06 /* TIME_WAIT */ && state != 0x0A /* LISTEN */)
					closing = 1;
			fclose(fp);
		}
		if (!closing)
			return;
		nanosleep(&tick, NULL);
	}
}

static int do_tcp_pair(const char *addr, long port, long hold_ms, long tx, long rx,
		       const char *server_ns, const char *client_ns)
{
	struct tcp_addr a;
	struct timespec hold = { hold_ms / 1000, (hold_ms % 1000) * 1000000L };
	int lfd, cfd, sfd;

	if (tcp_parse(addr, port, &a))
		return 2;
	if (server_ns && enter_netns(server_ns))
		return 1;
	lfd = tcp_listener(&a);
	if (lfd < 0)
		return 1;
	if (client_ns && enter_netns(client_ns))
		return 1;
	cfd = tcp_client(&a);
	if (cfd < 0)
		return 1;
	sfd = accept(lfd, NULL, NULL);
	if (sfd < 0)
		return 1;
	if (send_all(cfd, tx) || recv_exactly(sfd, tx) || send_all(sfd, rx) || recv_exactly(cfd, rx))
		return 1;
	nanosleep(&hold, NULL);
	close(cfd);
	if (close_after_eof(sfd))
		return 1;
	close(lfd);
	/* In two namespaces, /proc/net/tcp shows only the client's side. */
	if (!server_ns)
		settle_port(port);
	return 0;
}

static int do_tcp_many(const char *addr, long port, long n)
{
	struct tcp_addr a;
	int lfd;

	if (tcp_parse(addr, port, &a))
		return 2;
	lfd = tcp_listener(&a);
	if (lfd < 0)
		return 1;
	for (long i = 0; i < n; i++) {
		int cfd = tcp_client(&a), sfd;

		if (cfd < 0)
			return 1;
		sfd = accept(lfd, NULL, NULL);
		if (sfd < 0)
			return 1;
		/* The server closes first: TIME_WAIT stays with the server's port, and the
		 * client's ephemeral ports are free again at once. */
		close(sfd);
		if (close_after_eof(cfd))
			return 1;
	}
	close(lfd);
	settle_port(port);
	return 0;
}

/* N connections open at once: N clients connect, the server accepts them all, each
 * client writes TX bytes that the server reads, then every client closes and every
 * server socket closes on end of file. */
static int do_tcp_concurrent(const char *addr, long port, long n, long tx)
{
	static int cfd[1024], sfd[1024];
	char buf[4096] = { 0 };
	struct tcp_addr a;
	int lfd;

	if (n > 1024 || tx > (long)sizeof(buf) || tcp_parse(addr, port, &a))
		return 2;
	lfd = tcp_listener(&a);
	if (lfd < 0)
		return 1;
	for (long i = 0; i < n; i++) {
		cfd[i] = tcp_client(&a);
		sfd[i] = cfd[i] < 0 ? -1 : accept(lfd, NULL, NULL);
		if (sfd[i] < 0)
			return 1;
	}
	for (long i = 0; i < n; i++) {
		long got = 0;

		if (write(cfd[i], buf, tx) != tx)
			return 1;
		while (got < tx) {
			long r = read(sfd[i], buf, tx - got);

			if (r <= 0)
				return 1;
			got += r;
		}
	}
	for (long i = 0; i < n; i++)
		close(cfd[i]);
	for (long i = 0; i < n; i++)
		if (close_after_eof(sfd[i]))
			return 1;
	close(lfd);
	settle_port(port);
	return 0;
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int do_rate(long n, long rate)
{
	double start = now_s();

	for (long i = 0; i < n; i++) {
		/* Every 64 calls, wait until the schedule catches up: pacing without a
		 * syscall per call (clock_gettime is a vDSO call). */
		if (rate > 0 && i % 64 == 0)
			while (now_s() - start < (double)i / rate)
				;
		syscall(SYS_getppid);
	}
	if (getenv("WORKLOAD_TIME_FILE")) {
		FILE *f = fopen(getenv("WORKLOAD_TIME_FILE"), "w");

		if (!f)
			return 1;
		fprintf(f, "%.6f\n", now_s() - start);
		fclose(f);
	}
	return 0;
}

/* A steady rate, so a dashboard sampling at any moment sees the same order of processes. */
static int do_pace(long rate, long secs)
{
	struct timespec next;
	long per_slice = rate / 100;

	clock_gettime(CLOCK_MONOTONIC, &next);
	for (long slice = 0; slice < secs * 100; slice++) {
		for (long i = 0; i < per_slice; i++)
			syscall(SYS_getppid);
		next.tv_nsec += 10000000L;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}
	return 0;
}

static int do_unknown(long n)
{
	for (long i = 0; i < n; i++)
		syscall(1000);
	return 0;
}

/* ---- exact bytes, signed values, long strings, argv (decoding tests) ---- */

/* The 9 bytes written, then more the program never writes. */
static const char WRITTEN[] = "ab\0c\xff\n\\\"d" "NEVER-WRITTEN";
enum { WRITTEN_LEN = 9 };

static int do_bytes(void)
{
	char in[8] = "XXXXXXXX";
	int null = open("/dev/null", O_WRONLY);
	int zero = open("/dev/zero", O_RDONLY);

	if (null < 0 || zero < 0)
		return 1;
	if (syscall(SYS_write, null, WRITTEN, WRITTEN_LEN) != WRITTEN_LEN)
		return 1;
	if (syscall(SYS_read, zero, in, 4) != 4)
		return 1;
	close(null);
	close(zero);
	return 0;
}

static int do_signed(void)
{
	/* MAKE_PROCESS_CPUCLOCK(0, CPUCLOCK_SCHED): this process's CPU clock. */
	const clockid_t cpu_clock = (clockid_t)((~0u << 3) | 2);
	int fd = open("/dev/zero", O_RDONLY);
	int timer = -1;

	if (fd < 0)
		return 1;
	syscall(SYS_lseek, fd, -5L, SEEK_CUR);
	if (syscall(SYS_timer_create, cpu_clock, NULL, &timer) != 0)
		return 1;
	syscall(SYS_timer_delete, timer);
	close(fd);
	return 0;
}

static int do_long_path(long len)
{
	static const char head[] = "/nonexistent-btrace/";
	char path[8192];

	if (len < (long)sizeof(head) || len >= (long)sizeof(path))
		return 2;
	memset(path, 'p', len);
	memcpy(path, head, sizeof(head) - 1);
	path[len - 1] = 'E';
	path[len] = 0;
	syscall(SYS_openat, AT_FDCWD, path, O_RDONLY, 0);
	return 0;
}

static int do_exec_args(long n)
{
	static char *fixed[] = { "workload", "noop", "sp ace", "tab\tq\"uote\\", "\xff\x01", "" };
	static char bufs[64][16];
	char *argv[66];
	char *envp[] = { "BTRACE_ENV=1", NULL };

	if (n < 6 || n > 64)
		return 2;
	for (long i = 0; i < n; i++) {
		if (i < 6) {
			argv[i] = fixed[i];
		} else {
			snprintf(bufs[i], sizeof(bufs[i]), "arg-%ld", i);
			argv[i] = bufs[i];
		}
	}
	argv[n] = NULL;
	execve("/proc/self/exe", argv, envp);
	return 1;
}

static int do_fsync(const char *path)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);

	if (fd < 0 || write(fd, "x", 1) != 1 || fsync(fd) != 0)
		return 1;
	return close(fd);
}

/* ---- exec, open, block I/O, wake-ups, errors (the classic tools' tests) ---- */

static void exec_child(char *const argv[])
{
	pid_t p = fork();

	if (p == 0) {
		char *envp[] = { NULL };

		execve(argv[0][0] == '/' ? argv[0] : "/proc/self/exe", argv, envp);
		_exit(127);
	}
	waitpid(p, NULL, 0);
}

static void *exec_from_thread(void *unused)
{
	char *argv[] = { "workload", "noop", "from-thread", NULL };
	char *envp[] = { NULL };

	(void)unused;
	execve("/proc/self/exe", argv, envp);
	_exit(127);
}

static int do_exec_set(void)
{
	char *first[] = { "workload", "noop", "one", "two", NULL };
	char *missing[] = { "/nonexistent-btrace/prog", "x", NULL };
	static char many_buf[23][8], long_arg[301];
	char *many[26], *longer[] = { "workload", "noop", long_arg, NULL };
	pid_t p;

	exec_child(first);
	exec_child(missing);
	many[0] = "workload";
	many[1] = "noop";
	for (int i = 1; i <= 23; i++) {
		snprintf(many_buf[i - 1], sizeof(many_buf[0]), "a%d", i);
		many[i + 1] = many_buf[i - 1];
	}
	/* "workload noop a1 ... a23": 25 arguments. */
	many[25] = NULL;
	exec_child(many);
	memset(long_arg, 'L', 300);
	long_arg[300] = 0;
	exec_child(longer);
	p = fork();
	if (p == 0) {
		pthread_t t;

		pthread_create(&t, NULL, exec_from_thread, NULL);
		pthread_join(t, NULL);
		_exit(127);
	}
	waitpid(p, NULL, 0);
	return 0;
}

static int do_opens(const char *dir, long k, long j)
{
	char path[4096];

	for (long i = 0; i < k; i++) {
		long fd;

		snprintf(path, sizeof(path), "%s/f%ld", dir, i);
		switch (i % 4) {
		case 0:
#ifdef SYS_open
			fd = syscall(SYS_open, path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
#else /* arm64 has no open(2): what its libc's open() does */
			fd = syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
#endif
			break;
		case 1:
			fd = syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_CREAT | O_TRUNC, 0600);
			break;
		case 2: {
			unsigned long long how[3] = { O_RDWR | O_CREAT | O_CLOEXEC, 0644, 0 };

			fd = syscall(SYS_openat2, AT_FDCWD, path, how, sizeof(how));
			break;
		}
		default:
#ifdef SYS_creat
			fd = syscall(SYS_creat, path, 0644);
#else /* arm64 has no creat(2): what its libc's creat() does */
			fd = syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
#endif
		}
		if (fd < 0)
			return 1;
		close(fd);
	}
	for (long i = 0; i < j; i++) {
		snprintf(path, sizeof(path), "%s/missing-%ld", dir, i);
		if (syscall(SYS_openat, AT_FDCWD, path, O_RDONLY, 0) >= 0)
			return 1;
	}
	return 0;
}

static int do_direct(const char *dev, long n, long size)
{
	void *buf;
	int fd = open(dev, O_RDWR | O_DIRECT);

	if (fd < 0 || size <= 0 || size % 4096 || posix_memalign(&buf, 4096, size))
		return 1;
	memset(buf, 0x5a, size);
	for (long i = 0; i < n; i++)
		if (pwrite(fd, buf, size, i * size) != size)
			return 1;
	for (long i = 0; i < n; i++)
		if (pread(fd, buf, size, i * size) != size)
			return 1;
	return close(fd);
}

static double mono_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int do_execs(long n)
{
	char *argv[] = { "workload", "noop", NULL };
	char *envp[] = { NULL };
	double t0 = mono_s();

	for (long i = 0; i < n; i++) {
		int status;
		pid_t p = fork();

		if (p < 0)
			return 1;
		if (p == 0) {
			execve("/proc/self/exe", argv, envp);
			_exit(127);
		}
		if (waitpid(p, &status, 0) != p || !WIFEXITED(status) || WEXITSTATUS(status))
			return 1;
	}
	printf("%.1f\n", (mono_s() - t0) * 1e9 / n);
	return 0;
}

static int do_openloop(const char *path, long n)
{
	double t0 = mono_s();

	for (long i = 0; i < n; i++) {
		int fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY, 0);

		if (fd < 0)
			return 1;
		close(fd);
	}
	printf("%.1f\n", (mono_s() - t0) * 1e9 / n);
	return 0;
}

static int do_dio(const char *dev, long n)
{
	void *buf;
	double t0;
	int fd = open(dev, O_RDWR | O_DIRECT);

	if (fd < 0 || posix_memalign(&buf, 4096, 4096))
		return 1;
	memset(buf, 0x5a, 4096);
	t0 = mono_s();
	for (long i = 0; i < n; i++) {
		off_t off = (i / 2 % 256) * 4096;
		ssize_t r = i % 2 ? pread(fd, buf, 4096, off) : pwrite(fd, buf, 4096, off);

		if (r != 4096)
			return 1;
	}
	printf("%.1f\n", (mono_s() - t0) * 1e9 / n);
	return close(fd);
}

static int do_pingpong(long n)
{
	int ab[2], ba[2];
	double t0;
	char c = 0;
	pid_t p;

	if (pipe(ab) || pipe(ba))
		return 1;
	p = fork();
	if (p < 0)
		return 1;
	if (p == 0) {
		for (long i = 0; i < n; i++)
			if (read(ab[0], &c, 1) != 1 || write(ba[1], &c, 1) != 1)
				_exit(1);
		_exit(0);
	}
	t0 = mono_s();
	for (long i = 0; i < n; i++)
		if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1)
			return 1;
	printf("%.1f\n", (mono_s() - t0) * 1e9 / n);
	waitpid(p, NULL, 0);
	return 0;
}

static int do_shortlived(long n, long ms)
{
	struct timespec t = { ms / 1000, ms % 1000 * 1000000L };

	for (long i = 0; i < n; i++) {
		int status;
		pid_t p = fork();

		if (p < 0)
			return 1;
		if (p == 0) {
			syscall(SYS_nanosleep, &t, NULL);
			_exit(0);
		}
		if (waitpid(p, &status, 0) != p || !WIFEXITED(status) || WEXITSTATUS(status))
			return 1;
	}
	return 0;
}

static int do_named(const char *name, const char *what, const char *arg)
{
	int status;
	pid_t p;

	prctl(PR_SET_NAME, name);
	/* The work in a child, which has the name from its start (tracers that name a
	 * process by its first event see this one). */
	p = fork();
	if (p < 0)
		return 1;
	if (p > 0) {
		if (waitpid(p, &status, 0) != p || !WIFEXITED(status))
			return 1;
		return WEXITSTATUS(status);
	}
	if (!strcmp(what, "open")) {
		int fd = syscall(SYS_openat, AT_FDCWD, arg, O_RDONLY, 0);

		if (fd >= 0)
			close(fd);
		return 0;
	}
	if (!strcmp(what, "sleep")) {
		struct timespec ms = { 0, 1000000L };

		for (long i = 0; i < atol(arg); i++)
			syscall(SYS_nanosleep, &ms, NULL);
		return 0;
	}
	if (!strcmp(what, "burn")) {
		double end = mono_s() + atol(arg) / 1e3;
		volatile unsigned long x = 0;

		while (mono_s() < end)
			for (int i = 0; i < 100000; i++)
				x += i;
		return 0;
	}
	if (!strcmp(what, "exec")) {
		char *argv[] = { (char *)arg, "noop", (char *)name, NULL };
		char *envp[] = { NULL };

		execve(arg, argv, envp);
		return 127;
	}
	return 2;
}

static int do_wakeups(long n, const char *name)
{
	pid_t p = fork();

	if (p == 0) {
		struct timespec ms = { 0, 1000000L };

		prctl(PR_SET_NAME, name);
		for (long i = 0; i < n; i++)
			syscall(SYS_nanosleep, &ms, NULL);
		_exit(0);
	}
	waitpid(p, NULL, 0);
	return 0;
}

/* As wakeups, with the child named NAME1 for its first N sleeps and NAME2 for the next
 * N (as an exec renames a process). */
static int do_wakeups_renamed(long n, const char *name1, const char *name2)
{
	pid_t p = fork();

	if (p == 0) {
		struct timespec ms = { 0, 1000000L };

		prctl(PR_SET_NAME, name1);
		for (long i = 0; i < n; i++)
			syscall(SYS_nanosleep, &ms, NULL);
		prctl(PR_SET_NAME, name2);
		for (long i = 0; i < n; i++)
			syscall(SYS_nanosleep, &ms, NULL);
		_exit(0);
	}
	waitpid(p, NULL, 0);
	return 0;
}

static int do_fails(long n)
{
	char c;

	for (long i = 0; i < n; i++)
		syscall(SYS_openat, AT_FDCWD, "/nonexistent-btrace/missing", O_RDONLY, 0);
	for (long i = 0; i < n; i++)
		syscall(SYS_read, -1, &c, 1);
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	return 0;
}

static void getppid_times(long n)
{
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
}

static int do_tree(long n, const char *self)
{
	int done[2];
	char c, count[32];
	pid_t a, d, e;

	if (pipe(done))
		return 1;
	getppid_times(n);
	a = fork();
	if (a == 0) {
		pid_t g;

		getppid_times(2 * n);
		g = fork();
		if (g == 0) {
			getppid_times(3 * n);
			_exit(0);
		}
		waitpid(g, NULL, 0);
		_exit(0);
	}
	d = fork();
	if (d == 0) {
		/* Double fork: the middle process exits at once, the daemon is re-parented. */
		if (fork() == 0) {
			setsid();
			getppid_times(4 * n);
			(void)!write(done[1], "d", 1);
			_exit(0);
		}
		_exit(0);
	}
	e = fork();
	if (e == 0) {
		snprintf(count, sizeof(count), "%ld", 5 * n);
		execl(self, "workload", "syscalls", count, "0", (char *)NULL);
		_exit(127);
	}
	waitpid(a, NULL, 0);
	waitpid(d, NULL, 0);
	waitpid(e, NULL, 0);
	/* The daemon is nobody's child here: it says when it is done. */
	if (read(done[0], &c, 1) != 1)
		return 1;
	return 0;
}

/* K execs in flight at once: K threads call execve with a filename in a page that
 * userfaultfd holds missing, so each sits inside the call (after its entry) until the
 * page is given, as a zero page: the empty filename then fails with ENOENT in every
 * thread. Returns once all K have returned. */
static char *held_page;

static void *exec_held(void *unused)
{
	char *argv[] = { "workload", NULL };

	(void)unused;
	syscall(SYS_execve, held_page, argv, NULL);
	return NULL;
}

static int do_exec_held(long k)
{
	long page = sysconf(_SC_PAGESIZE), faults = 0;
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	struct uffdio_zeropage zero;
	struct uffd_msg msg;
	pthread_t t[64];
	int uffd;

	if (k < 1 || k > 64)
		return 2;
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api))
		return 1;
	held_page = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (held_page == MAP_FAILED)
		return 1;
	reg.range.start = (unsigned long)held_page;
	reg.range.len = page;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		return 1;
	for (long i = 0; i < k; i++)
		pthread_create(&t[i], NULL, exec_held, NULL);
	/* One message per thread blocked on the page (at most 5 s in all). */
	while (faults < k) {
		struct pollfd p = { .fd = uffd, .events = POLLIN };

		if (poll(&p, 1, 5000) != 1)
			return 1;
		if (read(uffd, &msg, sizeof(msg)) == sizeof(msg) &&
		    msg.event == UFFD_EVENT_PAGEFAULT)
			faults++;
	}
	zero.range.start = (unsigned long)held_page;
	zero.range.len = page;
	zero.mode = 0;
	if (ioctl(uffd, UFFDIO_ZEROPAGE, &zero))
		return 1;
	for (long i = 0; i < k; i++)
		pthread_join(t[i], NULL);
	return 0;
}

/* A command that leaves a daemon behind: it double-forks a daemon and exits once the
 * middle process has. The daemon waits until the command has exited (its end of a pipe
 * closes), holds HOLD_MS, makes N getppid calls and exits. */
static int do_daemon(long n, long hold_ms)
{
	int gone[2];
	pid_t mid;
	char c;

	if (pipe(gone))
		return 1;
	mid = fork();
	if (mid == 0) {
		if (fork() == 0) {
			setsid();
			close(gone[1]);
			while (read(gone[0], &c, 1) > 0)
				;
			usleep(hold_ms * 1000);
			getppid_times(n);
			_exit(0);
		}
		_exit(0);
	}
	waitpid(mid, NULL, 0);
	return 3;
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
	if (!strcmp(cmd, "getids") && argc == 4)
		return do_getids(arg(argv, 2), arg(argv, 3));
	if (!strcmp(cmd, "block") && argc == 4)
		return do_block(arg(argv, 2), arg(argv, 3));
	if (!strcmp(cmd, "threads") && argc == 4)
		return do_threads(arg(argv, 2), arg(argv, 3));
	if (!strcmp(cmd, "spread") && argc == 3)
		return do_spread(arg(argv, 2));
	if (!strcmp(cmd, "loop") && argc == 3)
		return do_loop(arg(argv, 2));
	if (!strcmp(cmd, "rate") && argc == 4)
		return do_rate(arg(argv, 2), arg(argv, 3));
	if (!strcmp(cmd, "open") && argc == 4)
		return do_open(argv[2], arg(argv, 3));
	if (!strcmp(cmd, "tcp-pair") && (argc == 7 || argc == 9))
		return do_tcp_pair(argv[2], arg(argv, 3), arg(argv, 4), arg(argv, 5), arg(argv, 6),
				   argc == 9 ? argv[7] : NULL, argc == 9 ? argv[8] : NULL);
	if (!strcmp(cmd, "tcp-many") && argc == 5)
		return do_tcp_many(argv[2], arg(argv, 3), arg(argv, 4));
	if (!strcmp(cmd, "pace") && argc == 4)
		return do_pace(arg(argv, 2), arg(argv, 3));
	if (!strcmp(cmd, "tcp-concurrent") && argc == 6)
		return do_tcp_concurrent(argv[2], arg(argv, 3), arg(argv, 4), arg(argv, 5));
	if (!strcmp(cmd, "tree") && argc == 3)
		return do_tree(arg(argv, 2), "/proc/self/exe");
	if (!strcmp(cmd, "exec-held") && argc == 3)
		return do_exec_held(arg(argv, 2));
	if (!strcmp(cmd, "daemon") && argc == 4)
		return do_daemon(arg(argv, 2), arg(argv, 3));
	if (!strcmp(cmd, "unknown") && argc == 3)
		return do_unknown(arg(argv, 2));
	if (!strcmp(cmd, "bytes") && argc == 2)
		return do_bytes();
	if (!strcmp(cmd, "signed") && argc == 2)
		return do_signed();
	if (!strcmp(cmd, "long-path") && argc == 3)
		return do_long_path(arg(argv, 2));
	if (!strcmp(cmd, "exec-args") && argc == 3)
		return do_exec_args(arg(argv, 2));
	if (!strcmp(cmd, "noop"))
		return 0;
	if (!strcmp(cmd, "fsync") && argc == 3)
		return do_fsync(argv[2]);
	if (!strcmp(cmd, "exec-set") && argc == 2)
		return do_exec_set();
	if (!strcmp(cmd, "opens") && argc == 5)
		return do_opens(argv[2], arg(argv, 3), arg(argv, 4));
	if (!strcmp(cmd, "direct") && argc == 5)
		return do_direct(argv[2], arg(argv, 3), arg(argv, 4));
	if (!strcmp(cmd, "wakeups") && (argc == 3 || argc == 4))
		return do_wakeups(arg(argv, 2), argc == 4 ? argv[3] : "wakee");
	if (!strcmp(cmd, "wakeups-renamed") && argc == 5)
		return do_wakeups_renamed(arg(argv, 2), argv[3], argv[4]);
	if (!strcmp(cmd, "execs") && argc == 3)
		return do_execs(arg(argv, 2));
	if (!strcmp(cmd, "openloop") && argc == 4)
		return do_openloop(argv[2], arg(argv, 3));
	if (!strcmp(cmd, "dio") && argc == 4)
		return do_dio(argv[2], arg(argv, 3));
	if (!strcmp(cmd, "pingpong") && argc == 3)
		return do_pingpong(arg(argv, 2));
	if (!strcmp(cmd, "shortlived") && argc == 4)
		return do_shortlived(arg(argv, 2), arg(argv, 3));
	if (!strcmp(cmd, "named") && argc == 5)
		return do_named(argv[2], argv[3], argv[4]);
	if (!strcmp(cmd, "fails") && argc == 3)
		return do_fails(arg(argv, 2));
	fprintf(stderr, "usage: workload [--wait] syscalls N M | block T MS | spread N | threads T N | open DIR K | loop N"
			" | rate N R | tcp-pair ADDR PORT HOLD_MS TX RX [SERVER_NETNS CLIENT_NETNS]"
			" | tcp-many ADDR PORT N | tcp-concurrent ADDR PORT N TX | pace RATE SECS | unknown N"
			" | bytes | signed | long-path LEN | exec-args N | noop | fsync PATH | tree N | exec-set"
			" | opens DIR K J | direct DEV N SIZE | wakeups N [NAME] | wakeups-renamed N NAME1 NAME2 | fails N | execs N | openloop PATH N"
			" | dio DEV N | pingpong N | shortlived N MS | named NAME open|sleep|burn|exec ARG\n");
	return 2;
}
