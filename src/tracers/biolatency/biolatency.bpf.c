// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace biolatency: block I/O latency, from a request's issue to the device to its
 * completion, as log2 histograms per operation (and per disk), with request sizes and,
 * with -Q, the time from insert into the queue to issue.
 *
 * Requests are kept by address in a bounded hash between block_rq_insert/block_rq_issue
 * and block_rq_complete. Kernel differences bridged here:
 *  - block_rq_insert and block_rq_issue take (q, rq) on 5.10 and (rq) since 5.11, when the
 *    request_queue argument was removed: both forms exist as programs, user space loads
 *    the one the kernel's BTF prototype of the tracepoint has;
 *  - the request's disk (request_disk() in compat.h);
 *  - block_rq_complete's error is an int on older kernels and a blk_status_t later: only
 *    whether it is zero is used.
 * Hooks: tp_btf, else raw_tp (the classic tracepoints carry no request address to pair
 * issue and completion with). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "abi.h"
#include "losses.h"
#include "log2_hist.h"
#include "scope.h"
#include "compat.h"
#include "biolatency.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile bool per_disk = false;   /* --per-disk */
/* The scope is checked at a request's first hook (insert when attached, else issue), in
 * the submitting task: a completion runs in whatever context the device interrupts. */
const volatile bool scoped = false;

/* Types user space reads (kept in the skeleton's BTF). */
const volatile struct bio_key _bio_key_type = {};
const volatile struct bio_stat _bio_stat_type = {};
const volatile struct bio_disk _bio_disk_type = {};
const volatile enum bio_limits _bio_limits_type = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BIO_MAX_INFLIGHT); /* user space sets the bound */
	__type(key, __u64);
	__type(value, struct bio_start);
} bio_starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, BIO_MAX_KEYS);
	__type(key, struct bio_key);
	__type(value, struct bio_stat);
} bio_stats SEC(".maps");

/* Completions whose key found no room in bio_stats: counted here, reported as "other",
 * so the totals stay exact. Slot 0. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bio_stat);
} bio_other SEC(".maps");

/* An all-zero value for new keys (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bio_stat);
} bio_zero SEC(".maps");

/* Disk names by dev, taken when a disk is first seen (it may be gone when user space
 * reads). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BIO_MAX_KEYS);
	__type(key, __u32);
	__type(value, struct bio_disk);
} bio_disks SEC(".maps");

static __always_inline void first_hook(struct request *rq, bool insert)
{
	__u64 key = (__u64)rq;
	struct bio_start s = {}, *e;

	if (!insert) {
		e = bpf_map_lookup_elem(&bio_starts, &key);
		if (e) {
			/* Inserted before (its scope decided then), or issued again after a
			 * requeue: the device time counts from this issue. */
			if (!e->skip) {
				e->issue_ns = bpf_ktime_get_ns();
				e->bytes = BPF_CORE_READ(rq, __data_len);
			}
			return;
		}
	}
	if (scoped && !scope_current())
		s.skip = 1;
	else if (insert)
		s.insert_ns = bpf_ktime_get_ns();
	else {
		s.issue_ns = bpf_ktime_get_ns();
		s.bytes = BPF_CORE_READ(rq, __data_len);
	}
	if (bpf_map_update_elem(&bio_starts, &key, &s, BPF_ANY))
		count_loss(LOSS_MAP_FULL);
}

static __always_inline struct bio_stat *stat_of(struct request *rq)
{
	struct bio_key k = {};
	struct bio_stat *st, *z;
	__u32 zero = 0;

	k.op = BPF_CORE_READ(rq, cmd_flags) & BIO_OP_MASK;
	if (per_disk) {
		struct gendisk *disk = request_disk(rq);

		if (disk)
			k.dev = (BPF_CORE_READ(disk, major) << 20) | BPF_CORE_READ(disk, first_minor);
	}
	st = bpf_map_lookup_elem(&bio_stats, &k);
	if (st)
		return st;
	z = bpf_map_lookup_elem(&bio_zero, &zero);
	if (!z)
		return NULL;
	/* Another CPU may have made the key since the lookup: then it is there. */
	bpf_map_update_elem(&bio_stats, &k, z, BPF_NOEXIST);
	st = bpf_map_lookup_elem(&bio_stats, &k);
	if (!st)
		return bpf_map_lookup_elem(&bio_other, &zero);
	if (per_disk && k.dev) {
		struct gendisk *disk = request_disk(rq);
		struct bio_disk d = {};

		BPF_CORE_READ_STR_INTO(&d.name, disk, disk_name);
		bpf_map_update_elem(&bio_disks, &k.dev, &d, BPF_NOEXIST);
	}
	return st;
}

static __always_inline void complete(struct request *rq, long error, __u32 nr_bytes)
{
	__u64 key = (__u64)rq, now;
	struct bio_start *s;
	struct bio_stat *st;

	s = bpf_map_lookup_elem(&bio_starts, &key);
	if (!s) {
		/* Issued before tracing began (or its entry was dropped): unless a scope is
		 * on, where a request of another task may have begun before too. */
		count_loss(LOSS_NO_ENTRY);
		return;
	}
	/* A partial completion: the request goes on (__data_len is what is left). */
	if (nr_bytes < BPF_CORE_READ(rq, __data_len))
		return;
	if (s->skip || !s->issue_ns) {
		if (!s->skip)
			count_loss(LOSS_NO_ENTRY);
		bpf_map_delete_elem(&bio_starts, &key);
		return;
	}
	st = stat_of(rq);
	if (st) {
		now = bpf_ktime_get_ns();
		hist_add(&st->lat, now - s->issue_ns);
		hist_add_value(&st->size, s->bytes);
		if (s->insert_ns && s->insert_ns <= s->issue_ns)
			hist_add(&st->queue, s->issue_ns - s->insert_ns);
		if (error)
			st->errors++;
	}
	bpf_map_delete_elem(&bio_starts, &key);
}

/* ---- tp_btf ---- */

SEC("tp_btf/block_rq_insert")
int BPF_PROG(bio_insert_btf, struct request *rq)
{
	first_hook(rq, true);
	return 0;
}

SEC("tp_btf/block_rq_insert")
int BPF_PROG(bio_insert_btf_q, struct request_queue *q, struct request *rq)
{
	first_hook(rq, true);
	return 0;
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(bio_issue_btf, struct request *rq)
{
	first_hook(rq, false);
	return 0;
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(bio_issue_btf_q, struct request_queue *q, struct request *rq)
{
	first_hook(rq, false);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(bio_complete_btf, struct request *rq, int error, unsigned int nr_bytes)
{
	complete(rq, error, nr_bytes);
	return 0;
}

/* ---- raw_tp ---- */

SEC("raw_tp/block_rq_insert")
int BPF_PROG(bio_insert_raw, struct request *rq)
{
	first_hook(rq, true);
	return 0;
}

SEC("raw_tp/block_rq_insert")
int BPF_PROG(bio_insert_raw_q, struct request_queue *q, struct request *rq)
{
	first_hook(rq, true);
	return 0;
}

SEC("raw_tp/block_rq_issue")
int BPF_PROG(bio_issue_raw, struct request *rq)
{
	first_hook(rq, false);
	return 0;
}

SEC("raw_tp/block_rq_issue")
int BPF_PROG(bio_issue_raw_q, struct request_queue *q, struct request *rq)
{
	first_hook(rq, false);
	return 0;
}

SEC("raw_tp/block_rq_complete")
int BPF_PROG(bio_complete_raw, struct request *rq, int error, unsigned int nr_bytes)
{
	complete(rq, error, nr_bytes);
	return 0;
}
