// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Pids as btrace's pid namespace sees them. A task iterator walks every task and writes,
 * for each one visible in the namespace whose inode number user space sets, its host ids
 * and its ids in that namespace. Kernel programs filter on host ids; user space reads
 * and prints namespace ids: this is how the two are matched when btrace runs in a pid
 * namespace of its own (a container). bpf_iter needs 5.8. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "pidns.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u32 target_ns_inum = 0;
const volatile struct pidns_entry _pidns_entry_type = {};

/* The id `pid` has in the target namespace; false when it has none there. A pid's
 * numbers[] hold one id per level, from the initial namespace (0) down to its own. */
static __always_inline bool nr_in_target(struct pid *pid, __u32 *nr)
{
	unsigned int level;

	if (!pid)
		return false;
	level = BPF_CORE_READ(pid, level);
	for (__u32 i = 0; i < PIDNS_MAX_LEVELS; i++) {
		struct upid up = {};

		if (i > level)
			break;
		if (bpf_core_read(&up, sizeof(up), &pid->numbers[i]))
			return false;
		if (BPF_CORE_READ(up.ns, ns.inum) == target_ns_inum) {
			*nr = up.nr;
			return true;
		}
	}
	return false;
}

SEC("iter/task")
int pidns_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;
	struct pidns_entry e = {};

	if (!t)
		return 0;
	if (!nr_in_target(BPF_CORE_READ(t, thread_pid), &e.ns_pid) ||
	    !nr_in_target(BPF_CORE_READ(t, group_leader, thread_pid), &e.ns_tgid))
		return 0;
	e.host_pid = BPF_CORE_READ(t, pid);
	e.host_tgid = BPF_CORE_READ(t, tgid);
	bpf_seq_write(ctx->meta->seq, &e, sizeof(e));
	return 0;
}
