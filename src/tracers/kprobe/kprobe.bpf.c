// SPDX-License-Identifier: GPL-2.0
/* btrace kprobe: calls of one kernel function, streamed through a ring buffer.
 *
 * Generic programs: the function is chosen at run time (fentry/fexit: attach target set
 * before load; kprobe/kretprobe: attached by name). User space reads the function's
 * prototype from the kernel's BTF and says, before load, how many arguments to read and
 * which of them are strings. Without --ret, entry writes the event straight into the ring
 * buffer. With --ret, entry keeps the event per thread in a bounded hash and the return
 * completes it (return value, latency) and sends it. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "abi.h"
#include "losses.h"
#include "scope.h"
#include "strings.h"
#include "task_event.h"
#include "kprobe.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by user space before load (from the function's BTF prototype). */
const volatile __u32 nr_args = 0;      /* arguments to read, <= FUNC_MAX_ARGS */
const volatile __u32 ret_slot = 0;     /* fexit: index of the return value in ctx[] */
const volatile bool has_ret = false;   /* the function returns a value */
const volatile bool with_ret = false;  /* --ret: pair entry and return */
const volatile __u8 str_slot[FUNC_MAX_ARGS] = {
	FUNC_NO_STR, FUNC_NO_STR, FUNC_NO_STR, FUNC_NO_STR, FUNC_NO_STR, FUNC_NO_STR,
};

/* Types user space decodes (kept in the skeleton's BTF). */
const volatile struct func_event _func_event_type = {};
const volatile enum func_limits _func_limits_type = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* user space sets the size */
} events SEC(".maps");

/* --ret: the event in progress per thread id; user space sets the bound. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct func_event);
} inflight SEC(".maps");

/* An event is too large for the stack: it is built here before going into `inflight`. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct func_event);
} scratch SEC(".maps");

/* Where the entry program builds the event, or NULL (filtered out, or no room: counted). */
static __always_inline struct func_event *begin(__u64 id)
{
	struct func_event *e;
	char comm[COMM_LEN];
	__u32 zero = 0;

	if (!scope_fixed_current(id) || !scope_live_ids(id >> 32))
		return NULL;
	bpf_get_current_comm(comm, sizeof(comm));
	if (!scope_comm_ok(comm))
		return NULL;
	if (with_ret) {
		e = bpf_map_lookup_elem(&scratch, &zero);
		if (!e)
			return NULL;
	} else {
		e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			count_loss(LOSS_RINGBUF);
			return NULL;
		}
	}
	fill_task_hdr(&e->h, id, comm);
	e->ret = 0;
	e->latency_ns = 0;
	return e;
}

/* Reads the string arguments, then sends the event (no --ret) or parks it (--ret). */
static __always_inline void finish(struct func_event *e)
{
#pragma unroll
	for (int i = 0; i < FUNC_MAX_ARGS; i++) {
		__u8 slot = str_slot[i];

		if (i < nr_args && slot < FUNC_MAX_STRS)
			read_any_str(e->strs + slot * STR_LEN, STR_LEN, (const void *)e->args[i]);
	}
	if (!with_ret) {
		bpf_ringbuf_submit(e, 0);
		return;
	}
	if (bpf_map_update_elem(&inflight, &e->h.tid, e, BPF_ANY))
		count_loss(LOSS_MAP_FULL);
}

/* The return of a call whose entry was parked: complete it and send it. */
static __always_inline void on_return(__u64 id, __u64 ret)
{
	__u32 tid = (__u32)id;
	struct func_event *e;

	if (!scope_fixed_current(id))
		return;
	e = bpf_map_lookup_elem(&inflight, &tid);
	if (!e) {
		/* Entered before tracing began, filtered out by --comm, or dropped. */
		count_loss(LOSS_NO_ENTRY);
		return;
	}
	e->ret = ret;
	e->latency_ns = bpf_ktime_get_ns() - e->h.ts_ns;
	if (bpf_ringbuf_output(&events, e, sizeof(*e), 0))
		count_loss(LOSS_RINGBUF);
	bpf_map_delete_elem(&inflight, &tid);
}

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
	finish(e);
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

SEC("kprobe")
int func_kprobe(struct pt_regs *ctx)
{
	struct func_event *e = begin(bpf_get_current_pid_tgid());

	if (!e)
		return 0;
	if (nr_args > 0) e->args[0] = PT_REGS_PARM1(ctx);
	if (nr_args > 1) e->args[1] = PT_REGS_PARM2(ctx);
	if (nr_args > 2) e->args[2] = PT_REGS_PARM3(ctx);
	if (nr_args > 3) e->args[3] = PT_REGS_PARM4(ctx);
	if (nr_args > 4) e->args[4] = PT_REGS_PARM5(ctx);
	if (nr_args > 5) e->args[5] = PT_REGS_PARM6(ctx);
	finish(e);
	return 0;
}

SEC("kretprobe")
int func_kretprobe(struct pt_regs *ctx)
{
	on_return(bpf_get_current_pid_tgid(), has_ret ? PT_REGS_RC(ctx) : 0);
	return 0;
}
