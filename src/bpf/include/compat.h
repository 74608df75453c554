/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* CO-RE shims: one place for every kernel difference btrace bridges, each with the change
 * that made it necessary. Reads go through bpf_core_field_exists and ___flavour structs,
 * never through version checks.
 *
 * Differences bridged by two programs rather than by a read (user space loads the one the
 * kernel's BTF prototype of the tracepoint matches), listed here to keep them in one list:
 *  - block_rq_insert and block_rq_issue lost their request_queue argument in 5.11, commit
 *    a54895fa057c ("block: remove the request_queue to argument request based
 *    tracepoints"), also in 5.10 stable from 5.10.137: biolatency.bpf.c's *_q programs. */
#ifndef BTRACE_COMPAT_H
#define BTRACE_COMPAT_H

/* task_struct.state became __state (and unsigned int) in 5.14, commit 2f064a59a11f
 * ("sched: Change task_struct::state"). */
struct task_struct___pre514 {
	volatile long state;
} __attribute__((preserve_access_index));

static __always_inline long task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___pre514 *)t, state);
}

/* struct request lost rq_disk, commit f3fa33acca9f ("block: remove the ->rq_disk field in
 * struct request"): the disk is then the queue's, request_queue.disk, added shortly before
 * by commit d152c682f03c ("block: add an explicit ->disk backpointer to the
 * request_queue"). 5.10 has only rq_disk, 6.1 only q->disk. */
struct request___with_disk {
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

static __always_inline struct gendisk *request_disk(struct request *rq)
{
	if (bpf_core_field_exists(((struct request___with_disk *)rq)->rq_disk))
		return BPF_CORE_READ((struct request___with_disk *)rq, rq_disk);
	return BPF_CORE_READ(rq, q, disk);
}

/* The cgroup (v2) a socket belongs to, NULL for one whose word holds net_prio/net_cls
 * data instead (or nothing): the kernel's sock_cgroup_ptr. struct sock_cgroup_data was a
 * tagged word (the pointer when its low bits are clear) until commit 8520e224f547 ("bpf,
 * cgroups: Fix cgroup v2 fallback on v1/v2 mixed mode"), 5.15, also in 5.10 stable; it
 * has a plain `cgroup` pointer since. */
struct sock_cgroup_data___tagged {
	__u64 val;
} __attribute__((preserve_access_index));

struct sock___tagged {
	struct sock_cgroup_data___tagged sk_cgrp_data;
} __attribute__((preserve_access_index));

static __always_inline struct cgroup *sock_cgroup(const struct sock *sk)
{
	__u64 word;

	if (bpf_core_field_exists(struct sock_cgroup_data, cgroup))
		return BPF_CORE_READ(sk, sk_cgrp_data.cgroup);
	word = BPF_CORE_READ((const struct sock___tagged *)sk, sk_cgrp_data.val);
	return (word & 3) ? NULL : (struct cgroup *)word;
}

#endif
