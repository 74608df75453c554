/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Function tracers (kprobe, uprobe, usdt): the event of one call, shared with user space
 * (anchored in model/abi.bpf.c, taken from there by src/tracers/func). */
#ifndef BTRACE_FUNC_H
#define BTRACE_FUNC_H

#include "abi.h"

enum func_limits {
	FUNC_MAX_ARGS = 6,
	FUNC_MAX_SLOTS = 3,   /* arguments read into string slots (strings, buffers) */
};

/* How an argument is read (besides its raw register value, always kept). */
enum arg_read {
	ARG_RAW = 0,      /* the register only */
	ARG_STR = 1,      /* char *: the C string it points at, at entry */
	ARG_BUF_IN = 2,   /* a buffer the function reads: len-argument bytes, at entry */
	ARG_BUF_OUT = 3,  /* a buffer the function fills: with --ret, min(ret, len) bytes at
	                   * return when ret > 0; else not read (STR_NOT_READ) */
};

/* One call of a function; its string slots (struct str_hdr and bytes, abi.h)
 * follow it in the record, ev_slot_bytes each. */
struct func_event {
	struct task_hdr h;
	__u64 args[FUNC_MAX_ARGS];  /* raw register values; user space types them from BTF */
	__u64 ret;                  /* with --ret: the raw return value */
	__u64 latency_ns;           /* with --ret: entry to return */
};

#endif
