/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What every tracer shares with user space: limits, loss counter slots, the log2
 * histogram and the header of streamed events.
 *
 * Constants are enums, not #defines, so that they reach the BTF of the objects: user space
 * takes them (and the structs) from the generated skeletons (src/model/abi.rs), never from
 * a copy. A tracer's own shared types live in its folder (src/tracers/NAME/NAME.h). */
#ifndef BTRACE_ABI_H
#define BTRACE_ABI_H

enum btrace_limits {
	/* Log2 latency histogram: bucket 0 = [0,1) us, bucket i = [2^(i-1), 2^i) us; the last
	 * bucket also holds everything above it (>= 2^30 us, about 18 minutes). */
	HIST_BUCKETS = 32,
	/* Syscall numbers index per-syscall arrays; x86_64's and arm64's stay below 512. */
	MAX_SYSCALLS = 512,
	/* The last slot counts every syscall whose number is outside the table (x32 numbers,
	 * numbers newer than the table, negative ones): reported as "other". */
	SYSCALL_OTHER = MAX_SYSCALLS - 1,
	/* A task's name: 15 characters and the NUL (TASK_COMM_LEN). */
	COMM_LEN = 16,
	/* Bytes kept of one string or buffer value (--string-size): the default and the
	 * accepted range. Longer values are cut to this many bytes and marked STR_TRUNCATED. */
	STR_SIZE_DEFAULT = 256,
	STR_SIZE_MIN = 16,
	STR_SIZE_MAX = 4096,
	/* Items of a char ** list (execve's argv) read at most. */
	ARGV_MAX = 20,
};

/* What a string slot's header says about the bytes after it. */
enum str_flags {
	STR_TRUNCATED = 1,  /* the value went on beyond the bytes kept (or the list beyond ARGV_MAX) */
	STR_FAULT = 2,      /* its memory could not be read: no bytes */
	STR_NOT_READ = 4,   /* deliberately not read: an output buffer not filled yet */
};

/* The head of a string slot in a streamed record. A string or buffer slot is this header
 * and `len` bytes (no NUL counted: a buffer may hold NULs), in room for the string size
 * plus two bytes (one more than kept, to see whether a C string goes on, and its NUL),
 * rounded up to 8. A list slot (argv) is this header, `len` = the number of items, then
 * ARGV_MAX string slots. User space computes the sizes and tells the programs. */
struct str_hdr {
	__u32 len;
	__u32 flags;  /* enum str_flags */
};

/* Loss counters, one slot each in a tracer's per-CPU `losses` array.
 * Nothing is dropped without being counted in one of these. */
enum loss_kind {
	LOSS_MAP_FULL = 0,  /* a bounded map had no room: the record was dropped */
	LOSS_NO_ENTRY = 1,  /* an exit came without its entry (began before tracing, or dropped) */
	LOSS_RINGBUF = 2,   /* ring buffer reserve failed: the event was dropped */
	LOSS_UNSEEN = 3,    /* a hook hit the programs were never given, found afterwards (a
			     * block whose end no program saw: the task is running again) */
	LOSS_KINDS = 4,
};

struct hist {
	__u64 count;   /* exact number of samples */
	__u64 sum_ns;  /* exact sum of the samples, nanoseconds */
	__u64 buckets[HIST_BUCKETS];
};

/* Who and when, at the head of every streamed event. */
struct task_hdr {
	__u64 ts_ns;   /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 pid;     /* thread group id, as the initial pid namespace numbers it */
	__u32 tid;
	char comm[COMM_LEN];
	__u32 ns_pid;  /* when btrace runs in a pid namespace of its own: the ids there */
	__u32 ns_tid;  /* (0: the task is outside it, or btrace is not in one) */
	__u64 cgroup_id; /* the task's cgroup v2 (0 without a v2 hierarchy) */
};

/* The scope filter's bounds (scope.h; user space: core/scope.rs). */
enum scope_limits {
	SCOPE_MAX_CGROUPS = 8,      /* --cgroup given at most this many times */
	SCOPE_LIVE_CGROUP_SLOT = 8, /* the dashboard's cgroup filter, after those */
	SCOPE_CGROUP_DEPTH = 32,    /* cgroup levels walked for another task */
};

#endif
