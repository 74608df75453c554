// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace tracepoint: any classic tracepoint, its record streamed through a ring buffer.
 *
 * One generic program, attached at run time to CATEGORY:NAME. It copies the fixed part
 * of the record (the layout of the tracepoint's format file) as it is, and reads what the
 * record only points at into slots after it: C strings (char * fields, __data_loc and
 * __rel_loc char[]), buffers with a length field beside them (exactly that many bytes, at
 * most the string size), char ** lists. User space parses the format file and decodes
 * the fields; it tells this program, before load, how many bytes to copy, where the
 * fields and their slots are, and the string size. With --stack, the kernel and user
 * stacks of the task follow the slots (struct stack_slot, stacks.h). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "abi.h"
#include "losses.h"
#include "ringbuf.h"
#include "scope.h"
#include "strings.h"
#include "stacks.h"
#include "task_event.h"
#include "tracepoint.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load (from the format file and --string-size). */
const volatile __u32 tp_raw_size = 0;              /* bytes of the fixed record, <= TP_RAW_MAX */
const volatile __u32 tp_rec_size = 0;              /* bytes of a whole ring buffer record */
const volatile __u32 tp_n_slots = 0;               /* slots used, <= TP_MAX_SLOTS */
const volatile __u32 str_size = STR_SIZE_DEFAULT;  /* bytes kept of a string */
const volatile __u32 str_slot_bytes = 0;           /* one string slot, header included */
const volatile __u16 tp_field_off[TP_MAX_SLOTS] = {};  /* the field, in the tracepoint's record */
const volatile __u8 tp_slot_kind[TP_MAX_SLOTS] = {};   /* enum tp_slot_kind */
const volatile __u32 tp_slot_off[TP_MAX_SLOTS] = {};   /* the slot, in our record */
const volatile __u16 tp_len_off[TP_MAX_SLOTS] = {};    /* TP_SLOT_BUF: the length field */
const volatile __u8 tp_len_size[TP_MAX_SLOTS] = {};    /* its size: 1, 2, 4 or 8 */
const volatile bool tp_len_signed[TP_MAX_SLOTS] = {};  /* a negative length means none */
const volatile bool tp_want_stack = false;         /* --stack: both stacks in the record */
const volatile __u32 tp_stack_off = 0;             /* where (struct stack_slot), 8-aligned */

/* Types user space decodes (kept in the skeleton's BTF). */
const volatile struct task_hdr _task_hdr_type = {};
const volatile enum tp_limits _tp_limits_type = 0;
const volatile enum tp_slot_kind _tp_slot_kind_type = 0;

DECLARE_RINGBUF(events, 1 << 22); /* user space sets the size */

/* The value of slot i's pointer field (char *, char **) in record `rec`. */
static __always_inline const void *field_ptr(void *rec, __u32 i)
{
	__u64 ptr = 0;

	bpf_probe_read_kernel(&ptr, sizeof(ptr), rec + tp_field_off[i]);
	return (const void *)ptr;
}

/* The address of a __data_loc/__rel_loc string inside record `rec`. */
static __always_inline const void *loc_src(void *rec, __u32 i, bool relative)
{
	__u16 off = tp_field_off[i];
	__u32 loc = 0;

	bpf_probe_read_kernel(&loc, sizeof(loc), rec + off);
	if (relative)
		return rec + off + sizeof(loc) + (loc & 0xffff);
	return rec + (loc & 0xffff);
}

/* The length field of buffer slot i; 0 when it is negative. */
static __always_inline __u64 buf_len(void *rec, __u32 i)
{
	void *at = rec + tp_len_off[i];
	__u64 v = 0;

	switch (tp_len_size[i]) {
	case 1: {
		__u8 x = 0;
		bpf_probe_read_kernel(&x, sizeof(x), at);
		v = tp_len_signed[i] && (__s8)x < 0 ? 0 : x;
		break;
	}
	case 2: {
		__u16 x = 0;
		bpf_probe_read_kernel(&x, sizeof(x), at);
		v = tp_len_signed[i] && (__s16)x < 0 ? 0 : x;
		break;
	}
	case 4: {
		__u32 x = 0;
		bpf_probe_read_kernel(&x, sizeof(x), at);
		v = tp_len_signed[i] && (__s32)x < 0 ? 0 : x;
		break;
	}
	default:
		bpf_probe_read_kernel(&v, sizeof(v), at);
		if (tp_len_signed[i] && (__s64)v < 0)
			v = 0;
	}
	return v;
}

SEC("tracepoint")
int tp_record(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	char comm[COMM_LEN];
	struct task_hdr *h;
	void *e;

	if (!scope_fixed_current(id) || !scope_live_ids(id >> 32))
		return 0;
	bpf_get_current_comm(comm, sizeof(comm));
	if (!scope_comm_ok(comm))
		return 0;

	/* The size is a load-time constant: the verifier knows it exactly, and every slot's
	 * offset and size below, so each read is checked against it. */
	e = rb_reserve(&events, tp_rec_size);
	if (!e)
		return 0;
	h = e;
	fill_task_hdr(h, id, comm);
	if (tp_raw_size <= TP_RAW_MAX)
		bpf_probe_read_kernel(e + sizeof(struct task_hdr), tp_raw_size, ctx);

#pragma unroll
	for (__u32 i = 0; i < TP_MAX_SLOTS; i++) {
		struct str_hdr *slot = e + tp_slot_off[i];

		if (i >= tp_n_slots)
			break;
		switch (tp_slot_kind[i]) {
		case TP_SLOT_STR_PTR:
			read_str(slot, str_size, field_ptr(ctx, i));
			break;
		case TP_SLOT_DATA_LOC:
			read_str(slot, str_size, loc_src(ctx, i, false));
			break;
		case TP_SLOT_REL_LOC:
			read_str(slot, str_size, loc_src(ctx, i, true));
			break;
		case TP_SLOT_BUF:
			read_buf(slot, str_size, field_ptr(ctx, i), buf_len(ctx, i));
			break;
		default: /* TP_SLOT_ARGV */
			read_argv(slot, str_size, str_slot_bytes, field_ptr(ctx, i));
		}
	}
	if (tp_want_stack)
		read_stacks(ctx, e + tp_stack_off, true);
	rb_submit(&events, e, h->ts_ns);
	return 0;
}
