/* SPDX-License-Identifier: GPL-2.0 */
/* Small helpers used by the kernel programs: loss counting and log2 bucketing. */
#ifndef BTRACE_COMMON_H
#define BTRACE_COMMON_H

#include "btrace.h"

/* Declares the per-CPU loss counters of one tracer. */
#define DECLARE_LOSSES()                                   \
	struct {                                               \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);           \
		__uint(max_entries, LOSS_KINDS);                   \
		__type(key, __u32);                                \
		__type(value, __u64);                              \
	} losses SEC(".maps");                                 \
	static __always_inline void count_loss(__u32 kind)     \
	{                                                      \
		__u64 *n = bpf_map_lookup_elem(&losses, &kind);    \
		if (n)                                             \
			(*n)++;                                        \
	}

/* Load-time task filters (-p, --tid, --comm), set by user space before load. The comm
 * check needs the current comm, which the caller usually also puts in its event. */
#define DECLARE_TASK_FILTER()                                                     \
	const volatile __u32 filter_tgid = 0;                                         \
	const volatile __u32 filter_tid = 0;                                          \
	const volatile bool filter_by_comm = false;                                   \
	const volatile char filter_comm[COMM_LEN] = {};                               \
	static __always_inline bool wanted_ids(__u64 pid_tgid)                        \
	{                                                                             \
		if (filter_tgid && (pid_tgid >> 32) != filter_tgid)                       \
			return false;                                                         \
		if (filter_tid && (__u32)pid_tgid != filter_tid)                          \
			return false;                                                         \
		return true;                                                              \
	}                                                                             \
	static __always_inline bool wanted_comm(const char *comm)                     \
	{                                                                             \
		if (!filter_by_comm)                                                      \
			return true;                                                          \
		for (int i = 0; i < COMM_LEN; i++) {                                      \
			if (comm[i] != filter_comm[i])                                        \
				return false;                                                     \
			if (!comm[i])                                                         \
				break;                                                            \
		}                                                                         \
		return true;                                                              \
	}

/* A string at an address that may be user or kernel memory: user first (syscall
 * arguments), then kernel. An unreadable string is left empty. */
static __always_inline void read_any_str(char *dst, __u32 size, const void *src)
{
	if (bpf_probe_read_user_str(dst, size, src) < 0 &&
	    bpf_probe_read_kernel_str(dst, size, src) < 0)
		dst[0] = 0;
}

/* floor(log2(v)) without branches; 0 for v == 0. */
static __always_inline __u64 log2_u64(__u64 v)
{
	__u64 r, shift;

	r = (v > 0xFFFFFFFFULL) << 5;
	v >>= r;
	shift = (v > 0xFFFF) << 4;
	v >>= shift;
	r |= shift;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= v >> 1;
	return r;
}

/* Bucket of a latency: 0 for [0,1) us, 1 for [1,2), 2 for [2,4), ...
 * 64-bit throughout: a 32-bit index gets zero-extended in a copy, and the verifier then
 * loses the bound proven on the clamped copy. */
static __always_inline __u64 us_bucket(__u64 ns)
{
	__u64 us = ns / 1000;
	__u64 idx = log2_u64(us) + (us != 0);

	return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static __always_inline void hist_add(struct hist *h, __u64 ns)
{
	h->count++;
	h->sum_ns += ns;
	h->buckets[us_bucket(ns)]++;
}

#endif
