// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace offcpu: time tasks spend blocked (off a CPU, not runnable), by stack.
 *
 * At sched_switch, a task that leaves the CPU blocked (not preempted, state not
 * TASK_RUNNING) has its kernel and user stacks walked (it is still the current task) and
 * kept with the time in a per-task store; when sched_wakeup makes it runnable again, the
 * time since is added to the count of (process, thread, name, stacks) in a hash, with the
 * exact nanoseconds (a block whose wakeup was not seen ends when sched_switch puts the
 * task on a CPU). Blocks shorter than --min-block are left out. The stacks and counts go
 * into the double-buffered tables of stack_tables.h, which user space drains while the
 * run goes on: the stacks into the buffer active when the task blocks, the block into the
 * one active when it wakes. The wait for a CPU after
 * the wakeup, like a preempted task's, is run-queue latency, not blocked time: on a busy
 * machine it would inflate every block.
 *
 * Two ways, as separate programs; user space enables the cheapest the kernel takes:
 * tp_btf with task storage (5.11+), or raw_tp with a bounded hash keyed by thread id. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "abi.h"
#include "losses.h"
#include "scope.h"
#include "compat.h"
#include "thread_store.h"
#include "stacks.h"
#include "stack_procs.h"
#include "stack_tables.h"
#include "offcpu.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TASK_RUNNING 0
#define PF_EXITING 0x00000004
#define TASK_DEAD 0x00000080

/* Set by user space before load. */
const volatile __u64 min_block_ns = 0;
const volatile bool want_kernel = true;
const volatile bool want_user = true;

/* Types user space decodes (kept in the skeleton's BTF). */
const volatile struct offcpu_val _offcpu_val_type = {};
const volatile struct offcpu_start _offcpu_start_type = {};

/* The counts of each buffer (stack_tables.h); user space sets the bound. */
struct counts_table {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct stack_key);
	__type(value, struct offcpu_val);
};
struct counts_table counts0 SEC(".maps");
struct counts_table counts1 SEC(".maps");

/* The block in progress of each blocked task: start_task or start_hash (by thread id). */
DECLARE_TASK_STORE(start, struct offcpu_start)

static __always_inline void add_block(struct stack_key *key, __u64 ns)
{
	__u32 buf = active_table();
	void *counts = buf ? (void *)&counts1 : (void *)&counts0;
	struct offcpu_val *v = bpf_map_lookup_elem(counts, key), one = { ns, 1 };

	table_count(TABLE_SEEN, 1);
	table_count(TABLE_SEEN_VALUE, ns);
	if (!v) {
		if (!bpf_map_update_elem(counts, key, &one, BPF_NOEXIST)) {
			table_count(buf ? TABLE_COUNTS_MADE1 : TABLE_COUNTS_MADE0, 1);
			return;
		}
		/* Made meanwhile on another CPU, or the store is full. */
		v = bpf_map_lookup_elem(counts, key);
		if (!v) {
			count_loss(LOSS_MAP_FULL);
			return;
		}
	}
	__sync_fetch_and_add(&v->total_ns, ns);
	__sync_fetch_and_add(&v->count, 1);
}

/* The task leaving the CPU (the current task): whether it blocks, in scope; its stacks
 * and the time go into `s`. */
static __always_inline bool blocked_out(void *ctx, bool preempt, struct task_struct *prev,
					struct offcpu_start *s)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 buf;

	if (preempt || task_state(prev) == TASK_RUNNING)
		return false;
	/* An exiting task's last switches: it does not come back. */
	if (BPF_CORE_READ(prev, flags) & PF_EXITING)
		return false;
	if ((__u32)id == 0 || !scope_current())
		return false;
	__builtin_memset(s, 0, sizeof(*s));
	/* The block starts now, before the stack walks: they run while the task is leaving,
	 * and under emulation they take long enough to shorten every block visibly. */
	s->ts_ns = bpf_ktime_get_ns();
	s->key.pid = id >> 32;
	s->key.tid = (__u32)id;
	bpf_get_current_comm(s->key.comm, sizeof(s->key.comm));
	buf = active_table();
	s->key.kernel_id = want_kernel ? table_stack_id(ctx, buf, false) : STACK_NONE;
	s->key.user_id = want_user ? table_stack_id(ctx, buf, true) : STACK_NONE;
	if (s->key.user_id >= 0)
		s->key.gen = proc_gen(id);
	return true;
}

/* A block of `prev` still open while `prev` is on a CPU (blocking again, or exiting):
 * neither its wakeup nor its switch back in reached the programs (the kernel ran the
 * task without giving them either hook hit: on some hosts, interrupts taken over
 * certain threads reach no BPF program, and count in no recursion_misses). Its time is
 * unknown, so it is counted as unseen rather than kept or silently overwritten. */
static __always_inline void unseen_end(struct offcpu_start *st)
{
	if (st && st->ts_ns) {
		count_loss(LOSS_UNSEEN);
		st->ts_ns = 0;
	}
}

/* The last switch of a task that has exited (TASK_DEAD), once per task: a block it
 * still holds never ended where the programs could see it. Not filtered by scope: only
 * tasks in scope hold blocks, and a process in a tree has left it by now. */
static __always_inline bool leaving_for_good(struct task_struct *prev)
{
	return task_state(prev) == TASK_DEAD;
}

/* The task coming back: its block, if it was long enough. */
static __always_inline void back_in(struct offcpu_start *s)
{
	__u64 ns = bpf_ktime_get_ns() - s->ts_ns;

	if (ns >= min_block_ns)
		add_block(&s->key, ns);
}

/* ---- tp_btf + task storage ---- */

SEC("tp_btf/sched_switch")
int BPF_PROG(offcpu_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct offcpu_start s, *st;

	if (blocked_out(ctx, preempt, prev, &s)) {
		st = start_task_of(prev, true);
		if (st) {
			unseen_end(st);
			*st = s;
		} else {
			count_loss(LOSS_MAP_FULL);
		}
	} else if (leaving_for_good(prev)) {
		unseen_end(start_task_of(prev, false));
	}
	st = start_task_of(next, false);
	if (st && st->ts_ns) {
		back_in(st);
		st->ts_ns = 0;
	}
	return 0;
}

/* The wakeup ends the block (runs in the waker's context, before `p` can be switched in:
 * it is enqueued under its run queue's lock). */
SEC("tp_btf/sched_wakeup")
int BPF_PROG(offcpu_wakeup_btf, struct task_struct *p)
{
	struct offcpu_start *st = start_task_of(p, false);

	if (st && st->ts_ns) {
		back_in(st);
		st->ts_ns = 0;
	}
	return 0;
}

/* ---- raw_tp + bounded hash keyed by thread id ---- */

SEC("raw_tp/sched_switch")
int BPF_PROG(offcpu_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct offcpu_start s, *st;
	__u32 tid;

	if (blocked_out(ctx, preempt, prev, &s)) {
		unseen_end(start_hash_of(s.key.tid));
		if (!start_hash_put(s.key.tid, &s))
			count_loss(LOSS_MAP_FULL);
	} else if (leaving_for_good(prev)) {
		tid = task_tid(prev);
		st = start_hash_of(tid);
		if (st) {
			unseen_end(st);
			start_hash_drop(tid);
		}
	}
	tid = task_tid(next);
	st = start_hash_of(tid);
	if (st) {
		back_in(st);
		start_hash_drop(tid);
	}
	return 0;
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(offcpu_wakeup_raw, struct task_struct *p)
{
	__u32 tid = task_tid(p);
	struct offcpu_start *st = start_hash_of(tid);

	if (st) {
		back_in(st);
		start_hash_drop(tid);
	}
	return 0;
}
