/* SPDX-License-Identifier: GPL-2.0 */
/* btrace kprobe: types shared by kprobe.bpf.c and user space (through the skeleton). */
#ifndef BTRACE_KPROBE_H
#define BTRACE_KPROBE_H

#include "abi.h"

enum func_limits {
	FUNC_MAX_ARGS = 6,
	FUNC_MAX_STRS = 3,    /* char * arguments read as strings */
	FUNC_NO_STR = 0xff,   /* str_slot[] value of an argument that is not a string */
};

/* One call of a kernel function. */
struct func_event {
	struct task_hdr h;
	__u64 args[FUNC_MAX_ARGS];  /* raw register values; user space types them from BTF */
	__u64 ret;                  /* with --ret: the raw return value */
	__u64 latency_ns;           /* with --ret: entry to return */
	char strs[FUNC_MAX_STRS * STR_LEN];  /* slot i at i * STR_LEN (flat: the Rust
	                                     * skeleton cannot derive nested arrays) */
};

#endif
