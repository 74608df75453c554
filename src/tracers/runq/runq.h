/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* btrace runq: types shared by runq.bpf.c and user space (through the skeleton). */
#ifndef BTRACE_RUNQ_H
#define BTRACE_RUNQ_H

#include "abi.h"

enum runq_limits {
	RUNQ_MAX_KEYS = 10240,  /* processes or cgroups kept apart (--per-process/--per-cgroup) */
};

/* What the waits are broken down by (load-time). */
enum runq_by {
	RUNQ_BY_NONE = 0,
	RUNQ_BY_PROCESS = 1,
	RUNQ_BY_CGROUP = 2,
};

/* Waits for a CPU, per CPU: the latency histogram, and how each wait began. */
struct runq_stat {
	struct hist lat;
	__u64 wakeups;      /* waits that began with a wakeup (sched_wakeup, sched_wakeup_new) */
	__u64 preemptions;  /* waits that began with a preemption (switched out runnable) */
	__u64 woken;        /* sched_wakeup and sched_wakeup_new events, each counted as it
	                     * happens, whether a wait followed or not (a task woken while
	                     * still on its CPU, its sleep's timer firing before it switched
	                     * out, never waits) */
};

/* When a task became runnable, and how (per task). */
struct runq_wait {
	__u64 ts;           /* 0 = not waiting */
	__u32 preempted;
	__u32 _pad;
};

/* The name of a process in the breakdown (its leader's comm when first seen). */
struct runq_comm {
	char comm[COMM_LEN];
};

#endif
