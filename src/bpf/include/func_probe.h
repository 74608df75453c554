/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Function tracers (kprobe, uprobe, usdt): what their programs share. The function is
 * chosen at run time; user space says before load how many arguments to read and which
 * of them are strings or buffers (with the argument holding their length).
 * Without --ret, entry writes the event straight into the ring buffer. With --ret, entry
 * keeps the event per thread in a bounded hash and the return completes it (return
 * value, latency, the bytes of output buffers) and sends it. With --hist, no events:
 * entry keeps its time per thread and the return adds the latency to one histogram.
 * With --stack, the kernel and user stacks at entry follow the string slots (struct
 * stack_slot, stacks.h).
 * A tracer's programs fill e->args from their context between begin() and finish(ctx, e),
 * and call on_return() at the return; entry_from_regs() and return_from_regs() do both for
 * probes whose context is the registers (kprobe, uprobe). */
#ifndef BTRACE_FUNC_PROBE_H
#define BTRACE_FUNC_PROBE_H

#include "abi.h"
#include "func.h"
#include "log2_hist.h"
#include "losses.h"
#include "regs.h"
#include "ringbuf.h"
#include "scope.h"
#include "stacks.h"
#include "strings.h"
#include "task_event.h"
#include "thread_store.h"

/* Whether --stack walks a kernel stack: a kprobe's; a uprobe (or USDT probe) fires on a
 * trap from user mode, where the kernel stack holds only the trap handling. */
#ifndef FUNC_KERNEL_STACK
#define FUNC_KERNEL_STACK true
#endif

/* Set by user space before load (from the function's BTF prototype and --string-size). */
const volatile __u32 nr_args = 0;      /* arguments to read, <= FUNC_MAX_ARGS */
const volatile bool has_ret = false;   /* the function returns a value */
const volatile bool with_ret = false;  /* --ret: pair entry and return */
const volatile __u32 str_size = STR_SIZE_DEFAULT;  /* bytes kept of a string or buffer */
const volatile __u32 str_slot_bytes = 0;  /* one string slot, header included */
const volatile __u32 ev_size = sizeof(struct func_event);  /* the event and its slots */
const volatile __u8 arg_read[FUNC_MAX_ARGS] = {};  /* enum arg_read */
const volatile __u8 arg_slot[FUNC_MAX_ARGS] = {};  /* its string slot (ARG_STR, ARG_BUF_*) */
const volatile __u8 arg_len[FUNC_MAX_ARGS] = {};   /* ARG_BUF_*: the length argument */
const volatile bool hist_on = false;   /* --hist: no events, a latency histogram */
/* --hist keeps entry times in task storage (starts_task), else in starts_hash: user
 * space tries task storage first, since kprobe and uprobe programs may use it only from
 * some kernel on (5.11 for tracing programs); it cost 250 ns less per uprobe call here. */
const volatile bool hist_task_store = false;
const volatile bool want_stack = false;  /* --stack: both stacks at entry, after the slots */
const volatile __u32 stack_off = 0;      /* where (struct stack_slot), 8-aligned */

/* Types user space decodes (kept in the skeleton's BTF). */
const volatile struct func_event _func_event_type = {};
const volatile enum func_limits _func_limits_type = 0;
const volatile enum arg_read _arg_read_type = 0;

DECLARE_RINGBUF(events, 1 << 22); /* user space sets the size */

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

/* --hist: the entry time per thread, in starts_task (with hist_task_store: 0 once its
 * return is counted) or starts_hash (user space sets the bound; the return removes it).
 * User space creates only the one in use. */
DECLARE_TASK_STORE(starts, __u64)

/* --hist: the function's latency histogram, per CPU (summed by user space). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hist);
} latency SEC(".maps");

/* --count: calls per key, per CPU (summed by user space). The key tells the function
 * apart: uprobe's attach cookie (the function's index, Linux 5.15+), or kprobe's probe
 * address, which user space resolves to the function containing it (any kernel). User
 * space sets the bound (a little above the number of attach points). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, __u64);
} counts SEC(".maps");

/* String slot `slot` of event `e`. */
static __always_inline struct str_hdr *slot_at(struct func_event *e, __u32 slot)
{
	return (void *)(e + 1) + slot * str_slot_bytes;
}

/* Whether the current task is traced (process tree, cgroup, --tid, --comm); its name is
 * left in `comm`. */
static __always_inline bool func_in_scope(__u64 id, char *comm)
{
	if (!scope_fixed_current(id) || !scope_live_ids(id >> 32))
		return false;
	bpf_get_current_comm(comm, COMM_LEN);
	return scope_comm_ok(comm);
}

/* --count: one call of the function `key` stands for, if the task is traced. The first
 * call on a CPU inserts the key (another CPU may have inserted it meanwhile: then this
 * CPU's zeroed copy is there to add to); a full map is a counted loss. */
static __always_inline void count_call(__u64 key)
{
	__u64 one = 1, *n;

	/* scope_current reads the comm only for a name filter: a count has no other use for
	 * it, and the helper call was a tenth of a uprobe count's cost. */
	if (!scope_current())
		return;
	n = bpf_map_lookup_elem(&counts, &key);
	if (n) {
		*n += 1;
		return;
	}
	if (!bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST))
		return;
	n = bpf_map_lookup_elem(&counts, &key);
	if (n)
		*n += 1;
	else
		count_loss(LOSS_MAP_FULL);
}

/* Where the entry program builds the event, or NULL (filtered out, or no room: counted). */
static __always_inline struct func_event *begin(__u64 id)
{
	struct func_event *e;
	char comm[COMM_LEN];
	__u32 zero = 0;

	if (hist_on) {
		__u64 ts;

		/* A histogram has no use for the comm: read only for a name filter. */
		if (!scope_current())
			return NULL;
		if (hist_task_store) {
			__u64 *t = starts_task_of(bpf_get_current_task_btf(), true);

			if (t)
				*t = bpf_ktime_get_ns();
			else
				count_loss(LOSS_MAP_FULL);
			return NULL;
		}
		ts = bpf_ktime_get_ns();
		if (!starts_hash_put((__u32)id, &ts))
			count_loss(LOSS_MAP_FULL);
		return NULL;
	}
	if (!func_in_scope(id, comm))
		return NULL;
	if (with_ret) {
		e = bpf_map_lookup_elem(&scratch, &zero);
		if (!e)
			return NULL;
	} else {
		e = rb_reserve(&events, ev_size);
		if (!e)
			return NULL;
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
		read_stacks(ctx, (void *)e + stack_off, FUNC_KERNEL_STACK);
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
		rb_submit(&events, e, e->h.ts_ns);
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
	if (hist_on) {
		__u32 zero = 0;
		struct hist *h;
		__u64 *ts;

		if (hist_task_store)
			ts = starts_task_of(bpf_get_current_task_btf(), false);
		else
			ts = starts_hash_of(tid);
		if (!ts || !*ts) {
			count_loss(LOSS_NO_ENTRY);
			return;
		}
		h = bpf_map_lookup_elem(&latency, &zero);
		if (h)
			hist_add(h, bpf_ktime_get_ns() - *ts);
		if (hist_task_store)
			*ts = 0;
		else
			starts_hash_drop(tid);
		return;
	}
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
	rb_output(&events, e, ev_size, bpf_ktime_get_ns());
	bpf_map_delete_elem(&inflight, &tid);
}

/* A kprobe's or uprobe's entry: the arguments are in the registers. */
static __always_inline void entry_from_regs(struct pt_regs *ctx)
{
	struct func_event *e = begin(bpf_get_current_pid_tgid());

	if (!e)
		return;
	func_args_from_regs(ctx, e->args, nr_args);
	finish(ctx, e);
}

/* A kretprobe's or uretprobe's return: the value is in the return register. */
static __always_inline void return_from_regs(struct pt_regs *ctx)
{
	on_return(bpf_get_current_pid_tgid(), has_ret ? PT_REGS_RC(ctx) : 0);
}

/* The entry and return programs of a probe whose context is the registers: ENTRY on
 * section ENTRY_SEC ("kprobe", "uprobe"), RETURN on RETURN_SEC. */
#define REGS_PROBE_PROGS(ENTRY_SEC, ENTRY, RETURN_SEC, RETURN)  \
	SEC(ENTRY_SEC)                                          \
	int ENTRY(struct pt_regs *ctx)                          \
	{                                                       \
		entry_from_regs(ctx);                           \
		return 0;                                       \
	}                                                       \
                                                                \
	SEC(RETURN_SEC)                                         \
	int RETURN(struct pt_regs *ctx)                         \
	{                                                       \
		return_from_regs(ctx);                          \
		return 0;                                       \
	}

#endif
