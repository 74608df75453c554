/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Loss counters: every tracer declares one per-CPU array with a slot per enum loss_kind,
 * and counts there whatever it could not record. User space sums the CPUs and reports. */
#ifndef BTRACE_LOSSES_H
#define BTRACE_LOSSES_H

#include "abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOSS_KINDS);
	__type(key, __u32);
	__type(value, __u64);
} losses SEC(".maps");

static __always_inline void count_loss(__u32 kind)
{
	__u64 *n = bpf_map_lookup_elem(&losses, &kind);

	if (n)
		(*n)++;
}

#endif
