/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* btrace hist: types shared by hist.bpf.c and user space (through the skeleton). */
#ifndef BTRACE_HIST_H
#define BTRACE_HIST_H

#include "abi.h"

enum hist_limits {
	/* Distinct processes counted at once by the dashboard's process list (user space
	 * prunes the ones that ended). */
	MAX_PROCS = 8192,
	/* Default bound of the breakdown's (key, syscall) pairs (hist --by; --max-keys). */
	BY_MAX_KEYS = 16384,
};

/* What hist --by breaks the histograms down by (load-time). */
enum hist_by {
	HIST_BY_NONE = 0,
	HIST_BY_PROCESS = 1,
	HIST_BY_THREAD = 2,
	HIST_BY_CGROUP = 3,
};

/* A breakdown histogram's key: the process (tgid), thread (tid) or cgroup id, and the
 * syscall's slot. */
struct by_key {
	__u64 id;
	__u32 nr;
	__u32 _pad;
};

/* Per-thread state between a syscall's entry and its exit. */
struct syscall_start {
	__u64 ts_ns;   /* 0 = no syscall in flight */
	__u32 nr;
	__u32 _pad;
};

/* The name of a process counted in the dashboard's process list: taken when it is first
 * counted on a CPU and again when it calls exec, so it is the current name even after the
 * process has exited. */
struct proc_comm {
	char comm[COMM_LEN];
};

#endif
