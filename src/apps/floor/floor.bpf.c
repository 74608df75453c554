// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Reference programs for `make bench`: the floors btrace hist is measured against, on the
 * same hooks (tp_btf sys_enter/sys_exit).
 *   empty:   programs that do nothing (the price of the hooks themselves)
 *   latency: the least any latency tool must do: clock on entry kept per thread in task
 *            storage, clock on exit (the difference stored, so it is not optimised away) */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct clock_pair {
	__u64 start_ns;
	__u64 last_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct clock_pair);
} clocks SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(floor_empty_enter)
{
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(floor_empty_exit)
{
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(floor_latency_enter)
{
	struct clock_pair *c = bpf_task_storage_get(&clocks, bpf_get_current_task_btf(), 0,
						    BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (c)
		c->start_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(floor_latency_exit)
{
	struct clock_pair *c = bpf_task_storage_get(&clocks, bpf_get_current_task_btf(), 0, 0);

	if (c && c->start_ns) {
		c->last_ns = bpf_ktime_get_ns() - c->start_ns;
		c->start_ns = 0;
	}
	return 0;
}

/* uprobe: the floor of `uprobe --hist`, on the same hooks: a uprobe and a uretprobe on
 * one function (attached by user space), the clock on entry kept in task storage, the
 * clock on return, nothing else. */
SEC("uprobe")
int floor_uprobe_enter(struct pt_regs *ctx)
{
	struct clock_pair *c = bpf_task_storage_get(&clocks, bpf_get_current_task_btf(), 0,
						    BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (c)
		c->start_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("uretprobe")
int floor_uprobe_exit(struct pt_regs *ctx)
{
	struct clock_pair *c = bpf_task_storage_get(&clocks, bpf_get_current_task_btf(), 0, 0);

	if (c && c->start_ns) {
		c->last_ns = bpf_ktime_get_ns() - c->start_ns;
		c->start_ns = 0;
	}
	return 0;
}
