/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* When a ring buffer record wakes btrace.
 *
 * By default the kernel wakes the consumer for every record submitted after it caught up;
 * at a million records a second that is a wakeup (an IPI, a context switch) every few
 * records, paid on both sides. With rb_wake_bytes set, a record is submitted without a
 * wakeup unless
 * - no record forced one for rb_wake_gap_ns: at a low rate every event wakes the
 *   consumer at once, at a high rate this costs at most one wakeup per gap;
 * - or it finds the unread bytes in [rb_wake_bytes, 2 * rb_wake_bytes): the consumer only
 *   sleeps on an empty ring (it drains before it waits), so while it sleeps the unread
 *   bytes grow from zero and every record sees them after its own reserve; the record
 *   that crosses the threshold, or one soon after, wakes it. Past that window the
 *   consumer is awake and behind, and no record pays for a wakeup.
 * A record that woke nobody waits at most for the consumer's poll timeout (WAIT_AT_MOST
 * in core/stream.rs). */
#ifndef BTRACE_RB_WAKEUP_H
#define BTRACE_RB_WAKEUP_H

#include <bpf/bpf_helpers.h>

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

#endif
