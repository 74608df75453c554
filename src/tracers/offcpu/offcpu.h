/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* btrace offcpu: types shared by offcpu.bpf.c and user space (through the skeleton). */
#ifndef BTRACE_OFFCPU_H
#define BTRACE_OFFCPU_H

#include "stacks.h"

/* Time blocked by (task, stacks): the exact sum of every block's nanoseconds, and how
 * many blocks. */
struct offcpu_val {
	__u64 total_ns;
	__u64 count;
};

/* A task switched out while blocked: its stacks then, and when. */
struct offcpu_start {
	struct stack_key key;
	__u64 ts_ns;
};

#endif
