// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Feature probes: tiny programs btrace loads (and attaches) to learn what this kernel
 * really allows, instead of guessing from its version. Each probe enables only its own
 * program; nothing here is loaded by a tracer. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} probe_store SEC(".maps");

/* Attach target set at run time (a function present in the kernel's BTF). */
SEC("fentry")
int probe_fentry(void *ctx)
{
	return 0;
}

SEC("kprobe")
int probe_kprobe(void *ctx)
{
	return 0;
}

/* uprobe_multi links (6.6+): attached by user space to "/" to see the kernel's answer. */
SEC("uprobe.multi")
int probe_uprobe_multi(void *ctx)
{
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(probe_tp_btf, struct pt_regs *regs, long id)
{
	return 0;
}

/* Task-local storage from a tracing program (5.11+). */
SEC("tp_btf/sys_enter")
int BPF_PROG(probe_task_storage, struct pt_regs *regs, long id)
{
	__u64 *v = bpf_task_storage_get(&probe_store, bpf_get_current_task_btf(), 0, 0);

	return v ? 1 : 0;
}
