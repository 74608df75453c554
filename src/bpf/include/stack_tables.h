/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The profilers' tables (profile, offcpu), double-buffered so that user space drains them
 * while the programs run: a run of any length loses nothing as long as each buffer holds
 * what arrives between two drains.
 *
 * Two buffers, each a counts hash (struct stack_key -> the profiler's value) and a stack
 * hash (the stack's content hash -> its addresses). `table_ctl[0]` names the buffer the
 * programs write; user space flips it, and drains the other one (read and delete every
 * entry) once no program can still be writing it: a program reads the index once, at its
 * start, and runs for microseconds; user space drains a buffer only after it has been
 * inactive for a tick (50 ms or more).
 *
 * Stacks are keyed by a hash of their addresses (63 bits, so that a key is never
 * negative: negative ids are errors, as in stacks.h), in a hash table with chaining: two
 * distinct stacks never evict each other, unlike in a BPF_MAP_TYPE_STACK_TRACE map, whose
 * buckets hold one stack each and refuse a second one (-EEXIST). A stack id in a count
 * entry may name a stack stored in an earlier buffer (offcpu walks the stacks when a task
 * blocks and counts the block when it wakes): user space keeps every drained stack, and
 * symbolizes at the end.
 *
 * Per-CPU counters (enum stack_table_counter) say how much each buffer took since its
 * last drain (user space drains early when one passes half full) and how much the
 * programs saw in all (kept or lost): the reports say "N of M kept". */
#ifndef BTRACE_STACK_TABLES_H
#define BTRACE_STACK_TABLES_H

#include "abi.h"
#include "losses.h"
#include "stacks.h"

struct stack_addrs {
	__u64 ip[STACK_MAX_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} table_ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TABLE_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} table_counters SEC(".maps");

/* Preallocated (perf_event programs may not use run-time allocated hash maps before
 * 6.1); user space sets the bounds (--max-stacks). */
struct stack_table {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct stack_addrs);
};
struct stack_table stacks0 SEC(".maps");
struct stack_table stacks1 SEC(".maps");

/* One stack being walked, per CPU (too big for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stack_addrs);
} stack_scratch SEC(".maps");

/* The buffer the programs write now (0 or 1). */
static __always_inline __u32 active_table(void)
{
	__u32 zero = 0, *a = bpf_map_lookup_elem(&table_ctl, &zero);

	return a && *a ? 1 : 0;
}

static __always_inline void table_count(__u32 counter, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&table_counters, &counter);

	if (c)
		*c += n;
}

/* The hash of a stack's first `n` addresses, as a non-negative id. */
static __always_inline __s64 stack_hash(const struct stack_addrs *s, __u32 n)
{
	__u64 h = 0x9e3779b97f4a7c15ULL ^ n;

	for (__u32 i = 0; i < STACK_MAX_DEPTH; i++) {
		if (i >= n)
			break;
		h ^= s->ip[i];
		h *= 0xff51afd7ed558ccdULL;
		h ^= h >> 33;
	}
	return (__s64)(h & 0x7fffffffffffffffULL);
}

/* The id of the current kernel (user: false) or user stack, stored in buffer `buf`'s
 * stack table if it is not there yet; or -errno (counted, as in stacks.h), or
 * STACK_NONE. */
static __always_inline __s64 table_stack_id(void *ctx, __u32 buf, bool user)
{
	void *table = buf ? (void *)&stacks1 : (void *)&stacks0;
	struct stack_addrs *s;
	__u32 zero = 0;
	__s64 id;
	long n, err;

	if (user && current_no_user())
		return STACK_NONE;
	s = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (!s)
		return stack_failed(-STACK_ENOMEM, user);
	/* The kernel zeroes what the walk did not fill. */
	n = bpf_get_stack(ctx, s->ip, sizeof(s->ip), user ? BPF_F_USER_STACK : 0);
	if (n < 0)
		return stack_failed(n, user);
	if (n == 0)
		return user ? stack_failed(-STACK_EFAULT, user) : STACK_NONE;
	id = stack_hash(s, n / sizeof(__u64));
	if (bpf_map_lookup_elem(table, &id))
		return id;
	err = bpf_map_update_elem(table, &id, s, BPF_NOEXIST);
	if (!err) {
		table_count(buf ? TABLE_STACKS_MADE1 : TABLE_STACKS_MADE0, 1);
		return id;
	}
	if (err == -STACK_EEXIST)
		return id; /* stored meanwhile by another CPU */
	/* The buffer's stack table is full: more distinct stacks than --max-stacks came
	 * between two drains. */
	return stack_failed(-STACK_ENOMEM, user);
}

#endif
