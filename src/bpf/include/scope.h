/* SPDX-License-Identifier: GPL-2.0 */
/* The scope filter every tracer uses: which tasks are traced (-p, -c, --tid, --comm, and
 * the dashboard's live pid filter). One definition, so every command means the same.
 *
 * Two forms:
 *  - load-time: const volatile rodata set by user space before load; a filter that is off
 *    is dead code the verifier removes, so it costs nothing;
 *  - run-time: .bss written by user space while the programs run (the dashboard changes
 *    its pid filter without reloading). A .bss read is one load from a fixed address.
 *
 * Ask about the current task with scope_current() (or its parts, when the caller already
 * holds the comm or must not apply the run-time part), about another task with
 * scope_task(). User space: src/core/scope.rs. */
#ifndef BTRACE_SCOPE_H
#define BTRACE_SCOPE_H

#include "abi.h"

const volatile __u32 scope_tgid = 0;      /* only this process (thread group id) */
const volatile __u32 scope_tid = 0;       /* only this thread */
const volatile bool scope_by_comm = false;
const volatile char scope_comm[COMM_LEN] = {};

__u32 scope_live_tgid = 0;                /* run-time: only this process (0 = any) */

/* The load-time id filters, for a task with these ids. */
static __always_inline bool scope_fixed_ids(__u32 tgid, __u32 tid)
{
	if (scope_tgid && tgid != scope_tgid)
		return false;
	if (scope_tid && tid != scope_tid)
		return false;
	return true;
}

/* The run-time filter. */
static __always_inline bool scope_live_ids(__u32 tgid)
{
	__u32 want = scope_live_tgid;

	return !want || tgid == want;
}

/* The name filter, for a comm the caller has read. */
static __always_inline bool scope_comm_ok(const char *comm)
{
	if (!scope_by_comm)
		return true;
	for (int i = 0; i < COMM_LEN; i++) {
		if (comm[i] != scope_comm[i])
			return false;
		if (!comm[i])
			break;
	}
	return true;
}

/* The load-time filters for the current task (ids from bpf_get_current_pid_tgid()). */
static __always_inline bool scope_fixed_current(__u64 pid_tgid)
{
	return scope_fixed_ids(pid_tgid >> 32, (__u32)pid_tgid);
}

/* Every filter, for the current task. */
static __always_inline bool scope_current(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	char comm[COMM_LEN];

	if (!scope_fixed_current(id) || !scope_live_ids(id >> 32))
		return false;
	if (scope_by_comm) {
		bpf_get_current_comm(comm, sizeof(comm));
		return scope_comm_ok(comm);
	}
	return true;
}

/* Every filter, for another task (e.g. the task a wakeup is for). Each field is read
 * only when a filter needs it: a read of another task's field is a helper call. */
static __always_inline bool scope_task(struct task_struct *t)
{
	__u32 live = scope_live_tgid;
	char comm[COMM_LEN];

	if (scope_tgid || live) {
		__u32 tgid = BPF_CORE_READ(t, tgid);

		if ((scope_tgid && tgid != scope_tgid) || (live && tgid != live))
			return false;
	}
	if (scope_tid && BPF_CORE_READ(t, pid) != scope_tid)
		return false;
	if (scope_by_comm) {
		BPF_CORE_READ_STR_INTO(&comm, t, comm);
		return scope_comm_ok(comm);
	}
	return true;
}

#endif
