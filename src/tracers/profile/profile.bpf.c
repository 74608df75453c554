// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace profile: timed samples of what runs on every CPU, counted by stack.
 *
 * User space opens one perf event per CPU on the software clock (cpu-clock: works where
 * there are no hardware counters, in VMs) with a period of 1/HZ seconds and attaches
 * profile_sample to each. Each sample walks the interrupted task's kernel and user stacks
 * into the stack map (their ids) and adds one to the count of (process, thread, name,
 * kernel stack, user stack) in a hash: one update per sample, no event. The idle task is
 * not counted. User space reads the counts and the stacks at the end (or each interval). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "abi.h"
#include "losses.h"
#include "scope.h"
#include "stacks.h"
#include "stack_procs.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* --kernel / --user: only one side (set by user space before load). */
const volatile bool want_kernel = true;
const volatile bool want_user = true;

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384); /* user space sets the bound (--max-stacks) */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, STACK_MAX_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* user space sets the bound */
	__type(key, struct stack_key);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void add_sample(struct stack_key *key)
{
	__u64 *n = bpf_map_lookup_elem(&counts, key), one = 1;

	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	if (!bpf_map_update_elem(&counts, key, &one, BPF_NOEXIST))
		return;
	/* Made meanwhile on another CPU, or the store is full: the sample is counted lost. */
	n = bpf_map_lookup_elem(&counts, key);
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

	if ((__u32)id == 0)
		return 0; /* the idle task */
	if (!scope_current())
		return 0;
	key.pid = id >> 32;
	key.tid = (__u32)id;
	bpf_get_current_comm(key.comm, sizeof(key.comm));
	key.kernel_id = want_kernel ? stack_id(ctx, &stacks, false) : STACK_NONE;
	key.user_id = want_user ? stack_id(ctx, &stacks, true) : STACK_NONE;
	if (key.user_id >= 0)
		key.gen = proc_gen(id);
	add_sample(&key);
	return 0;
}
