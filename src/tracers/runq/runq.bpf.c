// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace runq: run-queue latency, the time a runnable task waits for a CPU.
 *
 * A task becomes runnable when it is woken (sched_wakeup, sched_wakeup_new) or when it
 * is switched out while still runnable (preempted: its state is TASK_RUNNING at
 * sched_switch). The time is stored per task; when sched_switch puts the task on a CPU
 * the wait goes into a log2 histogram in a per-CPU array.
 *
 * Two ways exist as separate programs; user space enables the cheapest the kernel takes:
 * tp_btf with task storage (5.11+), or raw_tp with a bounded hash keyed by thread id
 * (thread_store.h).
 *
 * Every wakeup of a task in scope is also counted as it happens (`woken`), exactly, also
 * the ones no wait follows.
 *
 * Each wait is counted as beginning with a wakeup or a preemption, and, for btrace
 * runqlat --per-process/--per-cgroup, also added to its process's or cgroup's entry in a
 * bounded per-CPU hash (what does not fit is the total minus the entries). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "abi.h"
#include "losses.h"
#include "log2_hist.h"
#include "scope.h"
#include "compat.h"
#include "thread_store.h"
#include "runq.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TASK_RUNNING 0

/* Run-time setting written by user space while attached (see hist.bpf.c): wake times
 * stored before the programs were last re-attached are stale. */
__u64 epoch_ns = 0;

/* Load-time: the breakdown (enum runq_by). */
const volatile __u32 by = RUNQ_BY_NONE;

const volatile struct runq_stat _runq_stat_type = {};
const volatile struct runq_comm _runq_comm_type = {};
const volatile enum runq_by _runq_by_type = 0;
const volatile enum runq_limits _runq_limits_type = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct runq_stat);
} runq SEC(".maps");

/* The breakdown: by tgid or cgroup id (user space sets the size; 1 when off). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, RUNQ_MAX_KEYS);
	__type(key, __u64);
	__type(value, struct runq_stat);
} runq_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RUNQ_MAX_KEYS);
	__type(key, __u64);
	__type(value, struct runq_comm);
} runq_comms SEC(".maps");

/* An all-zero value for new keys. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct runq_stat);
} runq_zero SEC(".maps");

/* When each runnable task began to wait: queued_task or queued_hash (by thread id). */
DECLARE_TASK_STORE(queued, struct runq_wait)

/* The scope applies to the task that waits (not to whatever task runs the hook). */
static __always_inline bool wanted(struct task_struct *t)
{
	return scope_task(t);
}

static __always_inline void count_wait(struct runq_stat *st, __u64 ns, bool preempted)
{
	hist_add(&st->lat, ns);
	if (preempted)
		st->preemptions++;
	else
		st->wakeups++;
}

/* FNV-1a over a comm: names one of a process's names in its breakdown key. */
static __always_inline __u32 comm_hash(const char *comm)
{
	__u32 h = 2166136261u;

	for (int i = 0; i < COMM_LEN; i++) {
		if (!comm[i])
			break;
		h = (h ^ (__u8)comm[i]) * 16777619u;
	}
	return h;
}

/* The breakdown's entry of task t (made when missing; NULL when the table is full). By
 * process, the key is the tgid (low 32 bits) and a hash of the process's name now (high
 * 32 bits): waits are counted under the name the process had when it waited, so a
 * process that execs (or renames itself) has one entry per name, each with its name. */
static __always_inline struct runq_stat *key_stat(struct task_struct *t)
{
	struct runq_stat *st, *z;
	struct runq_comm c = {};
	__u32 zero = 0;
	__u64 key;

	if (by == RUNQ_BY_PROCESS) {
		BPF_CORE_READ_STR_INTO(&c.comm, t, group_leader, comm);
		key = BPF_CORE_READ(t, tgid) | ((__u64)comm_hash(c.comm) << 32);
	} else {
		key = BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
	}
	st = bpf_map_lookup_elem(&runq_keys, &key);
	if (st)
		return st;
	z = bpf_map_lookup_elem(&runq_zero, &zero);
	if (!z)
		return NULL;
	bpf_map_update_elem(&runq_keys, &key, z, BPF_NOEXIST);
	st = bpf_map_lookup_elem(&runq_keys, &key);
	if (st && by == RUNQ_BY_PROCESS)
		bpf_map_update_elem(&runq_comms, &key, &c, BPF_NOEXIST);
	return st;
}

/* Task t (in scope) was woken: counted whether or not it then waits. */
static __always_inline void count_woken(struct task_struct *t)
{
	__u32 zero = 0;
	struct runq_stat *st;

	st = bpf_map_lookup_elem(&runq, &zero);
	if (st)
		st->woken++;
	if (by != RUNQ_BY_NONE) {
		st = key_stat(t);
		if (st)
			st->woken++;
	}
}

/* Task t ran after waiting since w->ts. */
static __always_inline void add_wait(struct task_struct *t, struct runq_wait *w)
{
	__u32 zero = 0;
	struct runq_stat *st;
	__u64 ns;

	if (!w->ts || w->ts < epoch_ns)
		return;
	ns = bpf_ktime_get_ns() - w->ts;
	st = bpf_map_lookup_elem(&runq, &zero);
	if (st)
		count_wait(st, ns, w->preempted);
	if (by != RUNQ_BY_NONE) {
		st = key_stat(t);
		if (st)
			count_wait(st, ns, w->preempted);
	}
}

/* ---- tp_btf + task storage ---- */

static __always_inline void queued_btf(struct task_struct *t, bool preempted)
{
	struct runq_wait *w;

	if (!wanted(t))
		return;
	if (!preempted)
		count_woken(t);
	w = queued_task_of(t, true);
	if (!w) {
		count_loss(LOSS_MAP_FULL);
		return;
	}
	w->ts = bpf_ktime_get_ns();
	w->preempted = preempted;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup_btf, struct task_struct *p)
{
	queued_btf(p, false);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_btf, struct task_struct *p)
{
	queued_btf(p, false);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct runq_wait *w;

	if (task_state(prev) == TASK_RUNNING)
		queued_btf(prev, true);
	if (!next->pid)
		return 0;
	w = queued_task_of(next, false);
	if (w) {
		add_wait(next, w);
		w->ts = 0;
	}
	return 0;
}

/* ---- raw_tp + bounded hash keyed by thread id ---- */

static __always_inline void queued_raw(struct task_struct *t, bool preempted)
{
	struct runq_wait w = {};

	if (!wanted(t))
		return;
	if (!preempted)
		count_woken(t);
	w.ts = bpf_ktime_get_ns();
	w.preempted = preempted;
	if (!queued_hash_put(task_tid(t), &w))
		count_loss(LOSS_MAP_FULL);
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(sched_wakeup_raw, struct task_struct *p)
{
	queued_raw(p, false);
	return 0;
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_raw, struct task_struct *p)
{
	queued_raw(p, false);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(sched_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct runq_wait *w;
	__u32 pid;

	if (task_state(prev) == TASK_RUNNING)
		queued_raw(prev, true);
	pid = task_tid(next);
	if (!pid)
		return 0;
	w = queued_hash_of(pid);
	if (w) {
		add_wait(next, w);
		queued_hash_drop(pid);
	}
	return 0;
}
