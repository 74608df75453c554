/* SPDX-License-Identifier: GPL-2.0 */
/* Structs and constants shared by the kernel programs and user space.
 * User space takes the Rust versions of these from the generated skeletons. */
#ifndef BTRACE_H
#define BTRACE_H

/* Log2 latency histogram: bucket 0 = [0,1) us, bucket i = [2^(i-1), 2^i) us.
 * The last bucket also holds everything above it (>= 2^30 us, about 18 minutes). */
#define HIST_BUCKETS 32

/* Syscall numbers index per-syscall arrays; x86_64 numbers stay well below this. */
#define MAX_SYSCALLS 512

/* Loss counters, one slot each in a tracer's per-CPU `losses` array.
 * Nothing is dropped without being counted in one of these. */
enum loss_kind {
	LOSS_MAP_FULL = 0,  /* a bounded map had no room: the record was dropped */
	LOSS_NO_ENTRY = 1,  /* an exit came without its entry (began before tracing, or dropped) */
	LOSS_RINGBUF = 2,   /* ring buffer reserve failed: the event was dropped */
	LOSS_KINDS = 4,
};

struct hist {
	__u64 count;   /* exact number of samples */
	__u64 sum_ns;  /* exact sum of the samples, nanoseconds */
	__u64 buckets[HIST_BUCKETS];
};

/* Per-thread state between a syscall's entry and its exit. */
struct syscall_start {
	__u64 ts_ns;   /* 0 = no syscall in flight */
	__u32 nr;
	__u32 _pad;
};

#endif
