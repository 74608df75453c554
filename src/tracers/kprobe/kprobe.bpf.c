// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace kprobe: calls of one kernel function, streamed through a ring buffer.
 *
 * Generic programs: the function is chosen at run time (fentry/fexit: attach target set
 * before load; kprobe/kretprobe: attached by name); its prototype comes from the kernel's
 * BTF. What happens at entry and return is func_probe.h's, shared with uprobe (--ret,
 * --hist, --stack). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "func_probe.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* fexit: index of the return value in ctx[] (set by user space before load). */
const volatile __u32 ret_slot = 0;

/* ---- fentry/fexit: arguments are the u64 slots of ctx; reads beyond the prototype
 * are dead code (nr_args is a load-time constant) the verifier never sees. ---- */

SEC("fentry")
int func_fentry(__u64 *ctx)
{
	struct func_event *e = begin(bpf_get_current_pid_tgid());

	if (!e)
		return 0;
	if (nr_args > 0) e->args[0] = ctx[0];
	if (nr_args > 1) e->args[1] = ctx[1];
	if (nr_args > 2) e->args[2] = ctx[2];
	if (nr_args > 3) e->args[3] = ctx[3];
	if (nr_args > 4) e->args[4] = ctx[4];
	if (nr_args > 5) e->args[5] = ctx[5];
	finish(ctx, e);
	return 0;
}

/* One load of ctx at a constant offset. Written in assembly because clang would otherwise
 * merge the switch's loads into one through a computed pointer, and the verifier only
 * accepts ctx loads at a constant offset from ctx itself. */
#define CTX_U64(ctx, off)                                                        \
	({                                                                       \
		__u64 __v;                                                       \
		asm volatile("%0 = *(u64 *)(%1 + " #off ")" : "=r"(__v) : "r"(ctx)); \
		__v;                                                             \
	})

SEC("fexit")
int func_fexit(__u64 *ctx)
{
	__u64 ret = 0;

	if (has_ret) {
		/* The return value follows the arguments; its slot must be a constant. */
		switch (ret_slot) {
		case 0: ret = CTX_U64(ctx, 0); break;
		case 1: ret = CTX_U64(ctx, 8); break;
		case 2: ret = CTX_U64(ctx, 16); break;
		case 3: ret = CTX_U64(ctx, 24); break;
		case 4: ret = CTX_U64(ctx, 32); break;
		case 5: ret = CTX_U64(ctx, 40); break;
		case 6: ret = CTX_U64(ctx, 48); break;
		case 7: ret = CTX_U64(ctx, 56); break;
		case 8: ret = CTX_U64(ctx, 64); break;
		case 9: ret = CTX_U64(ctx, 72); break;
		case 10: ret = CTX_U64(ctx, 80); break;
		case 11: ret = CTX_U64(ctx, 88); break;
		default: ret = CTX_U64(ctx, 96); break;
		}
	}
	on_return(bpf_get_current_pid_tgid(), ret);
	return 0;
}

/* ---- kprobe/kretprobe: arguments in registers, by the calling convention ---- */

REGS_PROBE_PROGS("kprobe", func_kprobe, "kretprobe", func_kretprobe)

/* ---- --count: calls per function, no event. The function is told by the probe's
 * address, which user space resolves to the function containing it: a kprobe's
 * instruction pointer (just past the probed instruction, on every kernel: 5.10 has no
 * BPF cookies), or what bpf_get_func_ip says under kprobe.multi (5.18+, one link for
 * every function). ---- */

SEC("kprobe")
int func_kcount(struct pt_regs *ctx)
{
	count_call(PT_REGS_IP(ctx));
	return 0;
}

SEC("kprobe.multi")
int func_kcount_multi(struct pt_regs *ctx)
{
	count_call(bpf_get_func_ip(ctx));
	return 0;
}
