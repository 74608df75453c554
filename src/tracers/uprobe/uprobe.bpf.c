// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace uprobe and usdt: calls of one user-space function (uprobe/uretprobe, attached by
 * user space at a file offset it resolved from the ELF symbols), or hits of one USDT
 * probe (libbpf's USDT support decodes the arguments from the probe's note). What
 * happens at entry and return is func_probe.h's, shared with kprobe. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/usdt.bpf.h>
/* --stack: the user stack only (the probe fires in user mode). */
#define FUNC_KERNEL_STACK false
#include "func_probe.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

REGS_PROBE_PROGS("uprobe", func_uprobe, "uretprobe", func_uretprobe)

/* --count: calls per attach point, indexed by the BPF cookie user space gave each (its
 * index; Linux 5.15+; user space sizes the array to the attach points). An array slot,
 * not func_probe.h's hash by key: the hash's lookup put uprobe --count 55 ns a call above
 * bpftrace's count(). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts_by_cookie SEC(".maps");

SEC("uprobe")
int func_count(struct pt_regs *ctx)
{
	__u32 i = bpf_get_attach_cookie(ctx);
	__u64 *n;

	/* The comm is read only for a name filter. */
	if (!scope_current())
		return 0;
	n = bpf_map_lookup_elem(&counts_by_cookie, &i);
	if (n)
		*n += 1;
	else
		count_loss(LOSS_MAP_FULL);
	return 0;
}

/* A USDT probe: its arguments as libbpf's spec decodes them (sign-extended to 64 bits). */
SEC("usdt")
int func_usdt(struct pt_regs *ctx)
{
	struct func_event *e = begin(bpf_get_current_pid_tgid());
	long n = bpf_usdt_arg_cnt(ctx);

	if (!e)
		return 0;
#pragma unroll
	for (int i = 0; i < FUNC_MAX_ARGS; i++) {
		__u64 v = 0;

		if (i < nr_args && i < n)
			bpf_usdt_arg(ctx, i, (long *)&v);
		e->args[i] = v;
	}
	finish(ctx, e);
	return 0;
}
