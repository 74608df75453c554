/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Filling the head of a streamed event (struct task_hdr in abi.h). */
#ifndef BTRACE_TASK_EVENT_H
#define BTRACE_TASK_EVENT_H

#include "abi.h"
#include "scope.h"

/* Who (the current task) and when; `comm` was read by the caller (it may have filtered
 * on it already). In a pid namespace of btrace's own, also the ids it has there, taken
 * now: the task may be gone by the time user space reads the event. */
/* The current task's thread group id in btrace's pid namespace: 0 when btrace is in the
 * initial one (host ids are the ones) or the task is outside btrace's namespace. */
static __always_inline __u32 current_ns_tgid(void)
{
	struct bpf_pidns_info ns = {};

	if (scope_ns_ino &&
	    !bpf_get_ns_current_pid_tgid(scope_ns_dev, scope_ns_ino, &ns, sizeof(ns)))
		return ns.tgid;
	return 0;
}

static __always_inline void fill_task_hdr(struct task_hdr *h, __u64 pid_tgid, const char *comm)
{
	struct bpf_pidns_info ns = {};

	h->ts_ns = bpf_ktime_get_ns();
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	__builtin_memcpy(h->comm, comm, COMM_LEN);
	h->ns_pid = 0;
	h->ns_tid = 0;
	h->cgroup_id = bpf_get_current_cgroup_id();
	if (scope_ns_ino &&
	    !bpf_get_ns_current_pid_tgid(scope_ns_dev, scope_ns_ino, &ns, sizeof(ns))) {
		h->ns_pid = ns.tgid;
		h->ns_tid = ns.pid;
	}
}

#endif
