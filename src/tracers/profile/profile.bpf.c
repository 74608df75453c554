// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace profile: timed samples of what runs on every CPU, counted by stack.
 *
 * User space opens one perf event per CPU on the software clock (cpu-clock: works where
 * there are no hardware counters, in VMs) with a period of 1/HZ seconds and attaches
 * profile_sample to each. Each sample walks the interrupted task's kernel and user stacks
 * into the active buffer's stack table (stack_tables.h) and adds one to the count of
 * (process, thread, name, kernel stack, user stack) in that buffer's counts hash: no
 * event. The idle task is not counted. User space drains the inactive buffer while the
 * run goes on (once a second, or sooner when a table passes half full). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "abi.h"
#include "losses.h"
#include "scope.h"
#include "stacks.h"
#include "stack_procs.h"
#include "stack_tables.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* --kernel / --user: only one side (set by user space before load). */
const volatile bool want_kernel = true;
const volatile bool want_user = true;

/* The counts of each buffer (stack_tables.h); user space sets the bound. */
struct counts_table {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct stack_key);
	__type(value, __u64);
};
struct counts_table counts0 SEC(".maps");
struct counts_table counts1 SEC(".maps");

static __always_inline void add_sample(__u32 buf, struct stack_key *key)
{
	void *counts = buf ? (void *)&counts1 : (void *)&counts0;
	__u64 *n = bpf_map_lookup_elem(counts, key), one = 1;

	table_count(TABLE_SEEN, 1);
	table_count(TABLE_SEEN_VALUE, 1);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	if (!bpf_map_update_elem(counts, key, &one, BPF_NOEXIST)) {
		table_count(buf ? TABLE_COUNTS_MADE1 : TABLE_COUNTS_MADE0, 1);
		return;
	}
	/* Made meanwhile on another CPU, or the buffer is full: the sample is counted lost. */
	n = bpf_map_lookup_elem(counts, key);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		count_loss(LOSS_MAP_FULL);
}

SEC("perf_event")
int profile_sample(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct stack_key key = {};
	__u32 buf;

	if ((__u32)id == 0)
		return 0; /* the idle task */
	if (!scope_current())
		return 0;
	buf = active_table();
	key.pid = id >> 32;
	key.tid = (__u32)id;
	bpf_get_current_comm(key.comm, sizeof(key.comm));
	key.kernel_id = want_kernel ? table_stack_id(ctx, buf, false) : STACK_NONE;
	key.user_id = want_user ? table_stack_id(ctx, buf, true) : STACK_NONE;
	if (key.user_id >= 0)
		key.gen = proc_gen(id);
	add_sample(buf, &key);
	return 0;
}
