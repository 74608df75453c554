/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* When a ring buffer record wakes btrace.
 *
 * By default the kernel wakes the consumer for every record submitted after it caught up;
 * at a million records a second that is a wakeup (a context switch, an IPI) every few
 * records, paid on both sides. With rb_wake_bytes set, records are submitted without a
 * wakeup, except the one that brings the unread bytes to rb_wake_bytes: the consumer
 * only sleeps on an empty ring (it drains before it waits), so the unread bytes grow from
 * zero while it sleeps and every record sees them after its own reserve: the record that
 * crosses the threshold, or one soon after, is in [rb_wake_bytes, 2 * rb_wake_bytes) and
 * forces the wakeup. Past that window the consumer is awake and behind, and no record
 * pays for a wakeup. Fewer bytes than the threshold wait for the consumer's poll timeout,
 * which bounds the latency of a lone event (core/stream.rs). */
#ifndef BTRACE_RB_WAKEUP_H
#define BTRACE_RB_WAKEUP_H

#include <bpf/bpf_helpers.h>

const volatile __u64 rb_wake_bytes = 0; /* 0: the kernel's default wakeups */

/* The flags for bpf_ringbuf_submit() of a record reserved in `rb`. */
static __always_inline __u64 rb_wakeup_flags(void *rb)
{
	__u64 avail;

	if (!rb_wake_bytes)
		return 0;
	avail = bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA);
	if (avail >= rb_wake_bytes && avail < 2 * rb_wake_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

#endif
