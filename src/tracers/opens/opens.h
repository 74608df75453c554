/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* btrace open: types shared by open.bpf.c and user space (through the skeleton). */
#ifndef BTRACE_OPENS_H
#define BTRACE_OPENS_H

#include "abi.h"

enum open_limits {
	/* --path-prefix: bytes compared at most. */
	OPEN_PREFIX_MAX = 256,
};

/* Which call opened the file. */
enum open_call {
	OPEN_CALL_OPEN = 0,
	OPEN_CALL_OPENAT = 1,
	OPEN_CALL_OPENAT2 = 2,
	OPEN_CALL_CREAT = 3,
};

/* What a thread's open call left for its exit (the per-thread store). */
struct open_start {
	__u64 fname;  /* the path's user address; 0 = no open call in flight */
	__u64 flags;  /* as passed (creat: O_CREAT|O_WRONLY|O_TRUNC, what the kernel uses) */
	__u64 mode;
	__s32 dfd;    /* AT_FDCWD (-100) for open and creat */
	__u32 call;   /* enum open_call */
};

/* One finished open call: this, then a string slot (struct str_hdr and the path's bytes)
 * of the size user space chose (--string-size). */
struct open_event {
	struct task_hdr hdr;
	__s64 ret;    /* the file descriptor, or -errno */
	__u64 flags;
	__u64 mode;
	__s32 dfd;
	__u32 call;
};

#endif
