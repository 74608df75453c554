/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Loss counters: every tracer has one per-CPU array with a slot per enum loss_kind, and
 * counts there whatever it could not record. User space sums the CPUs and reports.
 * Other per-CPU counter arrays (stack losses, tcp's counts) are declared the same way. */
#ifndef BTRACE_LOSSES_H
#define BTRACE_LOSSES_H

#include "abi.h"

/* A per-CPU array NAME of N counters (a slot per kind; user space sums the CPUs). */
#define DECLARE_PERCPU_COUNTERS(NAME, N)                        \
	struct {                                                \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);        \
		__uint(max_entries, N);                         \
		__type(key, __u32);                             \
		__type(value, __u64);                           \
	} NAME SEC(".maps")

/* ... and COUNT(kind), which adds one to slot `kind` on this CPU. */
#define DECLARE_COUNTERS(NAME, N, COUNT)                        \
	DECLARE_PERCPU_COUNTERS(NAME, N);                       \
	static __always_inline void COUNT(__u32 kind)           \
	{                                                       \
		__u64 *n = bpf_map_lookup_elem(&NAME, &kind);   \
                                                                \
		if (n)                                          \
			(*n)++;                                 \
	}

DECLARE_COUNTERS(losses, LOSS_KINDS, count_loss)

#endif
