// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace verifier: deliberately wrong programs, each beside its fixed variant.
 *
 * Every program here is loaded only by `btrace verifier`, one at a time (user space turns
 * autoload off for all the others), and never attached: loading is all it takes for the
 * verifier to judge a program. Each *_bad program breaks one rule; *_fixed does the same
 * job the way the verifier accepts. Keep the code of each pair as close as possible, so
 * the difference is the lesson. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SLOTS 16

struct counters {
	__u64 slot[SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} counters SEC(".maps");

#define BIG 288

struct big_buf {
	char bytes[2 * BIG];
};

/* Per-CPU scratch space: where large buffers go instead of the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct big_buf);
} scratch SEC(".maps");

/* ---- 1. unbounded loop ------------------------------------------------------------ */
/* Intent: draw random numbers until one is a multiple of 1024. */

SEC("tracepoint/syscalls/sys_enter_getppid")
int loop_bad(void *ctx)
{
	/* Nothing bounds the number of iterations: the verifier meets the same state at
	 * the loop head again and cannot prove the loop ends. */
	while (bpf_get_prandom_u32() % 1024 != 0)
		;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int loop_fixed(void *ctx)
{
	/* A constant bound: the verifier walks at most 64 iterations (Linux 5.3+). */
#pragma clang loop unroll(disable)
	for (int i = 0; i < 64; i++)
		if (bpf_get_prandom_u32() % 1024 == 0)
			break;
	return 0;
}

/* ---- 2. out-of-bounds map value access ----------------------------------------------- */
/* Intent: count an event in one of 16 slots chosen at random. */

SEC("tracepoint/syscalls/sys_enter_getppid")
int bounds_bad(void *ctx)
{
	__u32 key = 0, i = bpf_get_prandom_u32() % 32; /* up to 31, but there are 16 slots */
	struct counters *c = bpf_map_lookup_elem(&counters, &key);

	if (!c)
		return 0;
	c->slot[i]++;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int bounds_fixed(void *ctx)
{
	__u32 key = 0, i = bpf_get_prandom_u32() % 32;
	struct counters *c = bpf_map_lookup_elem(&counters, &key);

	if (!c)
		return 0;
	if (i < SLOTS) /* the check the verifier needs to see */
		c->slot[i]++;
	return 0;
}

/* ---- 3. missing NULL check after a map lookup --------------------------------------- */
/* Intent: count calls per process. A hash map: a lookup there can always miss (recent
 * kernels know that an array lookup with a constant, in-range key cannot). */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} calls SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int null_bad(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u64 *n = bpf_map_lookup_elem(&calls, &pid);

	(*n)++; /* the lookup returns NULL for a process not seen before */
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int null_fixed(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u64 *n = bpf_map_lookup_elem(&calls, &pid), one = 1;

	if (!n) {
		bpf_map_update_elem(&calls, &pid, &one, BPF_NOEXIST);
		return 0;
	}
	(*n)++;
	return 0;
}

/* ---- 4. stack over 512 bytes --------------------------------------------------------- */
/* Intent: look at the first 288 bytes of a packet in each of two nested functions.
 * clang already refuses a single function whose frame exceeds 512 bytes; what reaches
 * the verifier is a call chain in which every function is under the limit but the frames
 * together are over it. A socket filter: recent kernels give tracing programs a private
 * stack with a relaxed limit for call chains, socket filters keep the classic one. */

static __noinline int inner_peek(struct __sk_buff *skb)
{
	char buf[BIG];

	if (bpf_skb_load_bytes(skb, 0, buf, sizeof(buf)))
		return 0;
	return buf[1];
}

static __noinline int outer_peek(struct __sk_buff *skb)
{
	char buf[BIG];

	if (bpf_skb_load_bytes(skb, 0, buf, sizeof(buf)))
		return 0;
	return buf[0] + inner_peek(skb);
}

SEC("socket")
int stack_bad(struct __sk_buff *skb)
{
	return outer_peek(skb);
}

SEC("socket")
int stack_fixed(struct __sk_buff *skb)
{
	__u32 key = 0;
	struct big_buf *b = bpf_map_lookup_elem(&scratch, &key);

	if (!b)
		return 0;
	if (bpf_skb_load_bytes(skb, 0, b->bytes, BIG) ||
	    bpf_skb_load_bytes(skb, 0, b->bytes + BIG, BIG))
		return 0;
	return b->bytes[0] + b->bytes[BIG + 1];
}

/* ---- 5. read of uninitialised stack -------------------------------------------------- */
/* Intent: store a record with its first counter set. A socket filter, loaded by btrace
 * without CAP_PERFMON: since Linux 6.5, loaders holding CAP_PERFMON may read
 * uninitialised stack (they get an unknown value), everyone else gets this error. */

SEC("socket")
int uninit_bad(void *ctx)
{
	__u32 key = 0;
	struct counters c;

	c.slot[0] = 1; /* slot[1..15] are never written */
	bpf_map_update_elem(&counters, &key, &c, BPF_ANY);
	return 0;
}

SEC("socket")
int uninit_fixed(void *ctx)
{
	__u32 key = 0;
	struct counters c = {};

	c.slot[0] = 1;
	bpf_map_update_elem(&counters, &key, &c, BPF_ANY);
	return 0;
}

/* ---- 6. kernel pointer dereferenced without a probe-read helper ---------------------- */
/* Intent: read the current task's process id from its task_struct. */

SEC("tracepoint/syscalls/sys_enter_getppid")
int kptr_bad(void *ctx)
{
	/* bpf_get_current_task() returns the address as a plain number: the verifier does
	 * not know what it points at and refuses a direct load through it. */
	struct task_struct *t = (void *)bpf_get_current_task();

	return t->tgid;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int kptr_fixed(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();

	return BPF_CORE_READ(t, tgid); /* bpf_probe_read_kernel, relocated for this kernel */
}
