/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The processes whose user stacks a profiler (profile, offcpu) recorded, so that user
 * space reads each one's memory maps while it lives: a process that exits before the run
 * ends is still symbolized.
 *
 * Each process gets a generation at its first recorded stack: the time it was first seen
 * (unique per pid: two processes cannot be first seen in the same nanosecond). Its
 * counts are keyed by it, and user space is sent a proc_event with it. An exec or the
 * end of the process forgets it, so the next stack gets a new generation and a new event:
 * counts from before an exec are never symbolized with the maps after it, nor those of a
 * reused pid with the maps of the process that had it before. */
#ifndef BTRACE_STACK_PROCS_H
#define BTRACE_STACK_PROCS_H

#include "abi.h"
#include "losses.h"
#include "ringbuf.h"
#include "stacks.h"
#include "task_event.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* user space sets the bound */
	__type(key, __u32);
	__type(value, __u64);
} proc_gens SEC(".maps");

DECLARE_RINGBUF(proc_events, 1 << 20);

/* The current process's generation; 0 when its store entry could not be made (counted:
 * its stacks are then symbolized only if it is still alive, unchanged, at the end). */
static __always_inline __u64 proc_gen(__u64 pid_tgid)
{
	__u32 tgid = pid_tgid >> 32;
	struct stack_proc_event *e;
	__u64 *g, gen;

	g = bpf_map_lookup_elem(&proc_gens, &tgid);
	if (g)
		return *g;
	gen = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&proc_gens, &tgid, &gen, BPF_NOEXIST)) {
		/* Another CPU made it first, or the store is full. */
		g = bpf_map_lookup_elem(&proc_gens, &tgid);
		if (g)
			return *g;
		count_loss(LOSS_MAP_FULL);
		return 0;
	}
	e = rb_reserve(&proc_events, sizeof(*e));
	if (!e)
		return gen;
	e->pid = tgid;
	e->ns_pid = current_ns_tgid();
	e->gen = gen;
	current_mm_id(&e->mm);
	rb_submit(&proc_events, e, gen);
	return gen;
}

SEC("raw_tp/sched_process_exec")
int BPF_PROG(procs_exec)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	bpf_map_delete_elem(&proc_gens, &tgid);
	return 0;
}

/* The process ends with its last thread (signal->live is decremented before the
 * tracepoint fires). */
SEC("raw_tp/sched_process_exit")
int BPF_PROG(procs_exit)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (BPF_CORE_READ(t, signal, live.counter) == 0)
		bpf_map_delete_elem(&proc_gens, &tgid);
	return 0;
}

#endif
