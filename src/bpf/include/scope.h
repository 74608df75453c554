/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The scope filter every tracer uses: which tasks are traced (-p, -c and the processes
 * they start, --no-children, --cgroup, --tid, --comm, and the dashboard's live pid
 * filter). One definition, so every command means the same. User space: src/core/scope.rs.
 *
 * Two forms:
 *  - load-time: const volatile rodata set by user space before load; a filter that is off
 *    is dead code the verifier removes, so it costs nothing;
 *  - run-time: .bss written by user space while the programs run (the dashboard changes
 *    its pid filter without reloading). A .bss read is one load from a fixed address.
 *
 * A process tree (-p, -c without --no-children) is a bitmap of host thread-group ids in
 * an mmapable array: user space seeds it (the command, or the process and the
 * descendants alive at start), and scope_fork_* / scope_exit_* keep it: a process forked
 * by one in the tree joins it, a process whose last thread exits leaves it (so a reused
 * pid is not traced by mistake). One array lookup answers "in the tree?".
 *
 * Cgroups (--cgroup, cgroup v2) are checked for the current task with
 * bpf_current_task_under_cgroup() over a cgroup array (descendant cgroups included), and
 * for another task by walking its cgroup's ancestors and comparing their ids with
 * scope_cgroup_ids. Both are maps, not rodata: a cgroup removed and made again at the
 * same path (a service restarted) has a new id, and user space puts the new cgroup in
 * them while the programs run.
 *
 * Ask about the current task with scope_current() (or its parts, when the caller already
 * holds the comm or must not apply the run-time part), about another task with
 * scope_task(). A tracer that uses the tree enables scope_fork_* and scope_exit_* of its
 * hook family (raw_tp, or classic tracepoints where raw_tp is not used). */
#ifndef BTRACE_SCOPE_H
#define BTRACE_SCOPE_H

#include "abi.h"
#include "losses.h"
#include "bitset.h"

const volatile __u32 scope_tgid = 0;      /* only this process (thread group id) */
const volatile bool scope_tree = false;   /* only processes in scope_procs */
const volatile __u32 scope_tid = 0;       /* only this thread */
const volatile __u32 scope_ncgroups = 0;  /* only tasks in one of the cgroups below */
const volatile bool scope_by_comm = false;
const volatile char scope_comm[COMM_LEN] = {};
/* btrace's own pid namespace (device and inode of /proc/self/ns/pid) when it is not the
 * initial one: events carry the ids it gives the task. */
const volatile __u64 scope_ns_dev = 0;
const volatile __u64 scope_ns_ino = 0;

/* Run-time (the dashboard): only this process (0 = any), or, with scope_live_tree, only
 * the processes in scope_procs (the dashboard's pid and its descendants). */
__u32 scope_live_tgid = 0;
bool scope_live_tree = false;
/* Run-time (the dashboard): only tasks in this cgroup v2 or below it (its id; 0 = any).
 * User space puts the cgroup in scope_cgroups' SCOPE_LIVE_CGROUP_SLOT first. */
__u64 scope_live_cgroup = 0;

/* One bit per host tgid; user space sizes it to pid_max (1 entry when unused). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} scope_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, SCOPE_MAX_CGROUPS + 1);
	__type(key, __u32);
	__type(value, __u32);
} scope_cgroups SEC(".maps");

/* The ids of the cgroups in scope_cgroups' first scope_ncgroups slots, for tasks other
 * than the current one; one entry, rewritten whole by user space. */
struct scope_cgroup_set {
	__u64 id[SCOPE_MAX_CGROUPS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scope_cgroup_set);
} scope_cgroup_ids SEC(".maps");

/* The word of tgid's bit; NULL beyond the bitmap (a pid above pid_max at start: counted). */
static __always_inline __u64 *scope_word(__u32 tgid)
{
	__u32 idx = tgid / 64;
	__u64 *w = bpf_map_lookup_elem(&scope_procs, &idx);

	if (!w)
		count_loss(LOSS_MAP_FULL);
	return w;
}

static __always_inline bool scope_in_tree(__u32 tgid)
{
	__u32 idx = tgid / 64;
	__u64 *w = bpf_map_lookup_elem(&scope_procs, &idx);

	return w && ((*w >> (tgid & 63)) & 1);
}

/* The one task forking or ending a process owns its bit (user space sets seeds with
 * atomic ORs on the mapped array). */
static __always_inline void scope_tree_set(__u32 tgid, bool on)
{
	bitset_word_set(scope_word(tgid), tgid, on);
}

/* The load-time id filters, for a task with these ids. */
static __always_inline bool scope_fixed_ids(__u32 tgid, __u32 tid)
{
	if (scope_tgid && tgid != scope_tgid)
		return false;
	if (scope_tree && !scope_in_tree(tgid))
		return false;
	if (scope_tid && tid != scope_tid)
		return false;
	return true;
}

/* The run-time filter. */
static __always_inline bool scope_live_ids(__u32 tgid)
{
	__u32 want = scope_live_tgid;

	if (scope_live_tree)
		return scope_in_tree(tgid);
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

/* The cgroup filter for the current task: in one of the cgroups, or below one. */
static __always_inline bool scope_cgroups_current(void)
{
	for (__u32 i = 0; i < SCOPE_MAX_CGROUPS; i++) {
		if (i >= scope_ncgroups)
			break;
		if (bpf_current_task_under_cgroup(&scope_cgroups, i) == 1)
			return true;
	}
	return false;
}

/* The cgroup filter for another task: its cgroup v2 or an ancestor is one of them. */
static __always_inline bool scope_cgroups_task(struct task_struct *t)
{
	struct cgroup *cg = BPF_CORE_READ(t, cgroups, dfl_cgrp);
	__u32 zero = 0;
	struct scope_cgroup_set *set = bpf_map_lookup_elem(&scope_cgroup_ids, &zero);

	if (!set)
		return false;
	for (int level = 0; level < SCOPE_CGROUP_DEPTH && cg; level++) {
		__u64 id = BPF_CORE_READ(cg, kn, id);

		for (__u32 i = 0; i < SCOPE_MAX_CGROUPS; i++) {
			if (i >= scope_ncgroups)
				break;
			if (id == set->id[i])
				return true;
		}
		/* css is the first member of struct cgroup: a parent css is its cgroup. */
		cg = (struct cgroup *)BPF_CORE_READ(cg, self.parent);
	}
	return false;
}

/* Whether another task's cgroup v2, or an ancestor of it, has id `want`. */
static __always_inline bool scope_task_under_id(struct task_struct *t, __u64 want)
{
	struct cgroup *cg = BPF_CORE_READ(t, cgroups, dfl_cgrp);

	for (int level = 0; level < SCOPE_CGROUP_DEPTH && cg; level++) {
		if (BPF_CORE_READ(cg, kn, id) == want)
			return true;
		cg = (struct cgroup *)BPF_CORE_READ(cg, self.parent);
	}
	return false;
}

/* The load-time filters for the current task (ids from bpf_get_current_pid_tgid()). */
static __always_inline bool scope_fixed_current(__u64 pid_tgid)
{
	if (!scope_fixed_ids(pid_tgid >> 32, (__u32)pid_tgid))
		return false;
	return !scope_ncgroups || scope_cgroups_current();
}

/* Every filter, for the current task. */
static __always_inline bool scope_current(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	char comm[COMM_LEN];

	if (!scope_fixed_current(id) || !scope_live_ids(id >> 32))
		return false;
	if (scope_live_cgroup &&
	    bpf_current_task_under_cgroup(&scope_cgroups, SCOPE_LIVE_CGROUP_SLOT) != 1)
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

	if (scope_tgid || scope_tree || live || scope_live_tree) {
		__u32 tgid = BPF_CORE_READ(t, tgid);

		if (scope_tgid && tgid != scope_tgid)
			return false;
		if (scope_tree && !scope_in_tree(tgid))
			return false;
		if (!scope_live_ids(tgid))
			return false;
	}
	if (scope_tid && BPF_CORE_READ(t, pid) != scope_tid)
		return false;
	if (scope_ncgroups && !scope_cgroups_task(t))
		return false;
	if (scope_live_cgroup && !scope_task_under_id(t, scope_live_cgroup))
		return false;
	if (scope_by_comm) {
		BPF_CORE_READ_STR_INTO(&comm, t, comm);
		return scope_comm_ok(comm);
	}
	return true;
}

/* ---- keeping the tree: forks join it, ended processes leave it ---- */

static __always_inline void scope_on_fork(__u32 parent_tgid, __u32 child_tgid)
{
	/* A new thread (same group) is already in; a new process of one in the tree joins. */
	if (child_tgid != parent_tgid && scope_in_tree(parent_tgid))
		scope_tree_set(child_tgid, true);
}

/* Runs in the exiting task: the process leaves the tree with its last thread (signal->live
 * is decremented before the tracepoint fires). */
static __always_inline void scope_on_exit(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (BPF_CORE_READ(t, signal, live.counter) == 0 && scope_in_tree(tgid))
		scope_tree_set(tgid, false);
}

SEC("raw_tp/sched_process_fork")
int BPF_PROG(scope_fork_raw, struct task_struct *parent, struct task_struct *child)
{
	scope_on_fork(BPF_CORE_READ(parent, tgid), BPF_CORE_READ(child, tgid));
	return 0;
}

SEC("raw_tp/sched_process_exit")
int BPF_PROG(scope_exit_raw)
{
	scope_on_exit();
	return 0;
}

/* task:task_newtask fires in the parent for every new task, with its clone flags: a task
 * made without CLONE_THREAD is a new process whose tgid is its pid. */
SEC("tracepoint/task/task_newtask")
int scope_fork_tp(struct trace_event_raw_task_newtask *ctx)
{
	const __u64 clone_thread = 0x00010000; /* CLONE_THREAD */

	if (!(ctx->clone_flags & clone_thread))
		scope_on_fork(bpf_get_current_pid_tgid() >> 32, ctx->pid);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int scope_exit_tp(void *ctx)
{
	scope_on_exit();
	return 0;
}

#endif
