/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* CO-RE shims: one place for every kernel difference btrace bridges, each with the change
 * that made it necessary. Reads go through bpf_core_field_exists and ___flavour structs,
 * never through version checks. */
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

#endif
