/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Log2 latency histograms (struct hist in abi.h): bucketing without branches. */
#ifndef BTRACE_LOG2_HIST_H
#define BTRACE_LOG2_HIST_H

#include "abi.h"

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

/* Bucket of a value: 0 for 0, 1 for 1, 2 for [2,4), 3 for [4,8), ...
 * 64-bit throughout: a 32-bit index gets zero-extended in a copy, and the verifier then
 * loses the bound proven on the clamped copy. */
static __always_inline __u64 log2_bucket(__u64 v)
{
	__u64 idx = log2_u64(v) + (v != 0);

	return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* Bucket of a latency: 0 for [0,1) us, 1 for [1,2), 2 for [2,4), ... */
static __always_inline __u64 us_bucket(__u64 ns)
{
	return log2_bucket(ns / 1000);
}

static __always_inline void hist_add(struct hist *h, __u64 ns)
{
	h->count++;
	h->sum_ns += ns;
	h->buckets[us_bucket(ns)]++;
}

/* A value that is not a latency (bytes): the sum is of the values, the buckets log2 of
 * the value itself (bucket 13 = [4096, 8192) bytes). */
static __always_inline void hist_add_value(struct hist *h, __u64 v)
{
	h->count++;
	h->sum_ns += v;
	h->buckets[log2_bucket(v)]++;
}

#endif
