// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace runq: run-queue latency, the time a runnable task waits for a CPU.
 *
 * A task becomes runnable when it is woken (sched_wakeup, sched_wakeup_new) or when it
 * is switched out while still runnable (preempted: its state is TASK_RUNNING at
 * sched_switch). The time is stored per task; when sched_switch puts the task on a CPU
 * the wait goes into a log2 histogram in a per-CPU array.
 *
 * Two ways exist as separate programs; user space enables the cheapest the kernel takes:
 * tp_btf with task storage (5.11+), or raw_tp with a bounded hash keyed by pid. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "abi.h"
#include "losses.h"
#include "log2_hist.h"
#include "scope.h"
#include "compat.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TASK_RUNNING 0

/* Run-time setting written by user space while attached (see hist.bpf.c): wake times
 * stored before the programs were last re-attached are stale. */
__u64 epoch_ns = 0;

const volatile struct hist _hist_type = {};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hist);
} runq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} queued_task SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} queued_hash SEC(".maps");

/* The scope applies to the task that waits (not to whatever task runs the hook). */
static __always_inline bool wanted(struct task_struct *t)
{
	return scope_task(t);
}

static __always_inline void add_wait(__u64 queued_ns)
{
	__u32 zero = 0;
	struct hist *h;

	if (!queued_ns || queued_ns < epoch_ns)
		return;
	h = bpf_map_lookup_elem(&runq, &zero);
	if (h)
		hist_add(h, bpf_ktime_get_ns() - queued_ns);
}

/* ---- tp_btf + task storage ---- */

static __always_inline void queued_btf(struct task_struct *t)
{
	__u64 *ts;

	if (!wanted(t))
		return;
	ts = bpf_task_storage_get(&queued_task, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!ts) {
		count_loss(LOSS_MAP_FULL);
		return;
	}
	*ts = bpf_ktime_get_ns();
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup_btf, struct task_struct *p)
{
	queued_btf(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_btf, struct task_struct *p)
{
	queued_btf(p);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u64 *ts;

	if (task_state(prev) == TASK_RUNNING)
		queued_btf(prev);
	if (!next->pid)
		return 0;
	ts = bpf_task_storage_get(&queued_task, next, 0, 0);
	if (ts) {
		add_wait(*ts);
		*ts = 0;
	}
	return 0;
}

/* ---- raw_tp + bounded hash keyed by pid ---- */

static __always_inline void queued_raw(struct task_struct *t)
{
	__u32 pid;
	__u64 now;

	if (!wanted(t))
		return;
	pid = BPF_CORE_READ(t, pid);
	now = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&queued_hash, &pid, &now, BPF_ANY))
		count_loss(LOSS_MAP_FULL);
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(sched_wakeup_raw, struct task_struct *p)
{
	queued_raw(p);
	return 0;
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_raw, struct task_struct *p)
{
	queued_raw(p);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(sched_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 pid;
	__u64 *ts;

	if (task_state(prev) == TASK_RUNNING)
		queued_raw(prev);
	pid = BPF_CORE_READ(next, pid);
	if (!pid)
		return 0;
	ts = bpf_map_lookup_elem(&queued_hash, &pid);
	if (ts) {
		add_wait(*ts);
		bpf_map_delete_elem(&queued_hash, &pid);
	}
	return 0;
}
