/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The ring buffers through which tracers stream records to user space: their declaration,
 * reserve and output with every failure counted (LOSS_RINGBUF), and when a record wakes
 * btrace. Every ring buffer of every program is declared and written through here.
 *
 * Wakeups. By default the kernel wakes the consumer for every record submitted after it
 * caught up; at a million records a second that is a wakeup (an IPI, a context switch)
 * every few records, paid on both sides. With rb_wake_bytes set (by user space before
 * load: core/stream.rs wake_bytes), a record is submitted without a wakeup unless
 * - no record forced one for rb_wake_gap_ns: at a low rate every event wakes the
 *   consumer at once, at a high rate this costs at most one wakeup per gap;
 * - or it finds the unread bytes in [rb_wake_bytes, 2 * rb_wake_bytes): the consumer only
 *   sleeps on an empty ring (it drains before it waits), so while it sleeps the unread
 *   bytes grow from zero and every record sees them after its own reserve; the record
 *   that crosses the threshold, or one soon after, wakes it. Past that window the
 *   consumer is awake and behind, and no record pays for a wakeup.
 * A record that woke nobody waits at most for the consumer's poll timeout (WAIT_AT_MOST
 * in core/stream.rs). With rb_wake_bytes 0 (a tracer that does not set it) every record
 * gets the kernel's default wakeup. */
#ifndef BTRACE_RINGBUF_H
#define BTRACE_RINGBUF_H

#include <bpf/bpf_helpers.h>
#include "abi.h"
#include "losses.h"

/* A ring buffer NAME of BYTES (a power of two, a multiple of the page size); user space
 * may set another size before load (--buffer-size). */
#define DECLARE_RINGBUF(NAME, BYTES) \
	struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, BYTES); } NAME SEC(".maps")

const volatile __u64 rb_wake_bytes = 0;  /* 0: the kernel's default wakeups */
const volatile __u64 rb_wake_gap_ns = 0;
/* When a record last forced a wakeup (any CPU; a lost race costs one more wakeup). */
__u64 rb_last_wake_ns = 0;

/* The flags for submitting, at `now_ns` (bpf_ktime_get_ns()), a record reserved in or
 * output to `rb`. */
static __always_inline __u64 rb_wakeup_flags(void *rb, __u64 now_ns)
{
	__u64 avail;

	if (!rb_wake_bytes)
		return 0;
	if ((__s64)(now_ns - rb_last_wake_ns) >= (__s64)rb_wake_gap_ns) {
		rb_last_wake_ns = now_ns;
		return BPF_RB_FORCE_WAKEUP;
	}
	avail = bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA);
	if (avail >= rb_wake_bytes && avail < 2 * rb_wake_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* Room for one record of `size` bytes (known to the verifier: a constant or load-time
 * rodata) in `rb`; NULL when the ring is full, counted. */
static __always_inline void *rb_reserve(void *rb, __u64 size)
{
	void *rec = bpf_ringbuf_reserve(rb, size, 0);

	if (!rec)
		count_loss(LOSS_RINGBUF);
	return rec;
}

/* Sends a record rb_reserve gave, at `now_ns` (bpf_ktime_get_ns(), usually the record's
 * own time stamp). */
static __always_inline void rb_submit(void *rb, void *rec, __u64 now_ns)
{
	bpf_ringbuf_submit(rec, rb_wakeup_flags(rb, now_ns));
}

/* Copies `size` bytes at `data` into `rb` as one record, at `now_ns`; a full ring counts
 * the record as lost. */
static __always_inline void rb_output(void *rb, void *data, __u64 size, __u64 now_ns)
{
	if (bpf_ringbuf_output(rb, data, size, rb_wakeup_flags(rb, now_ns)))
		count_loss(LOSS_RINGBUF);
}

#endif
