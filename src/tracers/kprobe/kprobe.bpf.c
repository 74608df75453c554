// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace kprobe: calls of one kernel function, streamed through a ring buffer.
 *
 * Generic programs: the function is chosen at run time (fentry/fexit: attach target set
 * before load; kprobe/kretprobe: attached by name). User space reads the function's
 * prototype from the kernel's BTF and says, before load, how many arguments to read and
 * which of them are strings or buffers (with the argument holding their length).
 * Without --ret, entry writes the event straight into the ring buffer. With --ret, entry
 * keeps the event per thread in a bounded hash and the return completes it (return
 * value, latency, the bytes of output buffers) and sends it. With --stack, the kernel and
 * user stacks at entry follow the string slots (struct stack_slot, stacks.h). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "abi.h"
#include "losses.h"
#include "scope.h"
#include "strings.h"
#include "stacks.h"
#include "task_event.h"
#include "kprobe.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load (from the function's BTF prototype and --string-size). */
const volatile __u32 nr_args = 0;      /* arguments to read, <= FUNC_MAX_ARGS */
const volatile __u32 ret_slot = 0;     /* fexit: index of the return value in ctx[] */
const volatile bool has_ret = false;   /* the function returns a value */
const volatile bool with_ret = false;  /* --ret: pair entry and return */
const volatile __u32 str_size = STR_SIZE_DEFAULT;  /* bytes kept of a string or buffer */
const volatile __u32 str_slot_bytes = 0;  /* one string slot, header included */
const volatile __u32 ev_size = sizeof(struct func_event);  /* the event and its slots */
const volatile __u8 arg_read[FUNC_MAX_ARGS] = {};  /* enum arg_read */
const volatile __u8 arg_slot[FUNC_MAX_ARGS] = {};  /* its string slot (ARG_STR, ARG_BUF_*) */
const volatile __u8 arg_len[FUNC_MAX_ARGS] = {};   /* ARG_BUF_*: the length argument */
const volatile bool want_stack = false;  /* --stack: both stacks at entry, after the slots */
const volatile __u32 stack_off = 0;      /* where (struct stack_slot), 8-aligned */

/* Types user space decodes (kept in the skeleton's BTF). */
const volatile struct func_event _func_event_type = {};
const volatile enum func_limits _func_limits_type = 0;
const volatile enum arg_read _arg_read_type = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* user space sets the size */
} events SEC(".maps");

/* --ret: the event in progress per thread id; user space sets the bound, and the value
 * size (ev_size: the event with its string slots). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct func_event));
} inflight SEC(".maps");

/* An event is too large for the stack: it is built here before going into `inflight`
 * (value size ev_size, set by user space). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct func_event));
} scratch SEC(".maps");

/* String slot `slot` of event `e`. */
static __always_inline struct str_hdr *slot_at(struct func_event *e, __u32 slot)
{
	return (void *)(e + 1) + slot * str_slot_bytes;
}

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
		e = bpf_ringbuf_reserve(&events, ev_size, 0);
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

/* Reads the strings and input buffers, then sends the event (no --ret) or parks it
 * (--ret). Output buffers are not filled yet: marked, and read at return. */
static __always_inline void finish(void *ctx, struct func_event *e)
{
	if (want_stack)
		read_stacks(ctx, (void *)e + stack_off);
#pragma unroll
	for (int i = 0; i < FUNC_MAX_ARGS; i++) {
		struct str_hdr *h = slot_at(e, arg_slot[i]);
		__u8 len_arg = arg_len[i];

		if (i >= nr_args || arg_slot[i] >= FUNC_MAX_SLOTS || len_arg >= FUNC_MAX_ARGS)
			continue;
		switch (arg_read[i]) {
		case ARG_STR:
			read_str(h, str_size, (const void *)e->args[i]);
			break;
		case ARG_BUF_IN:
			read_buf(h, str_size, (const void *)e->args[i], e->args[len_arg]);
			break;
		case ARG_BUF_OUT:
			h->len = 0;
			h->flags = STR_NOT_READ;
			break;
		}
	}
	if (!with_ret) {
		bpf_ringbuf_submit(e, 0);
		return;
	}
	if (bpf_map_update_elem(&inflight, &e->h.tid, e, BPF_ANY))
		count_loss(LOSS_MAP_FULL);
}

/* At return: the output buffers hold what the function wrote, min(ret, len) bytes when
 * it returned a positive count. */
static __always_inline void fill_out_bufs(struct func_event *e, __u64 ret)
{
#pragma unroll
	for (int i = 0; i < FUNC_MAX_ARGS; i++) {
		struct str_hdr *h = slot_at(e, arg_slot[i]);
		__u8 len_arg = arg_len[i];
		__u64 n = ret;

		if (i >= nr_args || arg_read[i] != ARG_BUF_OUT || arg_slot[i] >= FUNC_MAX_SLOTS ||
		    len_arg >= FUNC_MAX_ARGS || (__s64)ret <= 0)
			continue;
		if (n > e->args[len_arg])
			n = e->args[len_arg];
		read_buf(h, str_size, (const void *)e->args[i], n);
	}
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
	if (has_ret)
		fill_out_bufs(e, ret);
	if (bpf_ringbuf_output(&events, e, ev_size, 0))
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
	finish(ctx, e);
	return 0;
}

SEC("kretprobe")
int func_kretprobe(struct pt_regs *ctx)
{
	on_return(bpf_get_current_pid_tgid(), has_ret ? PT_REGS_RC(ctx) : 0);
	return 0;
}
