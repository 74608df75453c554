/* SPDX-License-Identifier: GPL-2.0 */
/* Filling the head of a streamed event (struct task_hdr in abi.h). */
#ifndef BTRACE_TASK_EVENT_H
#define BTRACE_TASK_EVENT_H

#include "abi.h"

/* Who (the current task) and when; `comm` was read by the caller (it may have filtered
 * on it already). */
static __always_inline void fill_task_hdr(struct task_hdr *h, __u64 pid_tgid, const char *comm)
{
	h->ts_ns = bpf_ktime_get_ns();
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	__builtin_memcpy(h->comm, comm, COMM_LEN);
}

#endif
