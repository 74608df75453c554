// SPDX-License-Identifier: GPL-2.0
/* btrace tracepoint: any classic tracepoint, its record streamed through a ring buffer.
 *
 * One generic program, attached at run time to CATEGORY:NAME. It copies the fixed part
 * of the record (the layout of the tracepoint's format file) as it is, and reads the
 * strings the record only points at (char * fields, __data_loc/__rel_loc char[]) into
 * slots after it. User space parses the format file and decodes the fields; it tells
 * this program, before load, how many bytes to copy and where the strings are. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "abi.h"
#include "losses.h"
#include "scope.h"
#include "strings.h"
#include "task_event.h"
#include "tracepoint.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by user space before load (from the format file). */
const volatile __u32 tp_raw_size = 0;            /* bytes of the fixed record, <= TP_RAW_MAX */
const volatile __u32 tp_n_strs = 0;              /* string slots used, <= TP_MAX_STRS */
const volatile __u16 tp_str_off[TP_MAX_STRS] = {};  /* offset of each string's field */
const volatile __u8 tp_str_kind[TP_MAX_STRS] = {};  /* enum tp_str_kind */

/* Types user space decodes (kept in the skeleton's BTF). */
const volatile struct task_hdr _task_hdr_type = {};
const volatile enum tp_limits _tp_limits_type = 0;
const volatile enum tp_str_kind _tp_str_kind_type = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* user space sets the size */
} events SEC(".maps");

/* The address of string slot i's text inside record `rec`. */
static __always_inline const void *str_src(void *rec, __u32 i)
{
	__u16 off = tp_str_off[i];
	__u64 ptr = 0;
	__u32 loc = 0;

	switch (tp_str_kind[i]) {
	case TP_STR_PTR:
		bpf_probe_read_kernel(&ptr, sizeof(ptr), rec + off);
		return (const void *)ptr;
	case TP_STR_DATA_LOC:
		bpf_probe_read_kernel(&loc, sizeof(loc), rec + off);
		return rec + (loc & 0xffff);
	default: /* TP_STR_REL_LOC */
		bpf_probe_read_kernel(&loc, sizeof(loc), rec + off);
		return rec + off + sizeof(loc) + (loc & 0xffff);
	}
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

	/* The size is a load-time constant: the verifier knows it exactly. */
	e = bpf_ringbuf_reserve(&events,
				sizeof(struct task_hdr) + tp_raw_size + tp_n_strs * STR_LEN, 0);
	if (!e) {
		count_loss(LOSS_RINGBUF);
		return 0;
	}
	h = e;
	fill_task_hdr(h, id, comm);
	if (tp_raw_size <= TP_RAW_MAX)
		bpf_probe_read_kernel(e + sizeof(struct task_hdr), tp_raw_size, ctx);

#pragma unroll
	for (__u32 i = 0; i < TP_MAX_STRS; i++) {
		if (i < tp_n_strs)
			read_any_str(e + sizeof(struct task_hdr) + tp_raw_size + i * STR_LEN,
				     STR_LEN, str_src(ctx, i));
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}
