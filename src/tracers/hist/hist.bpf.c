// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace hist: per-syscall latency histograms, computed in the kernel.
 *
 * Entry stores the clock and the syscall number per thread; exit adds the duration to
 * that syscall's log2 histogram in a per-CPU array. Three hooks (tp_btf, raw_tp,
 * classic tracepoint) and two per-thread stores (task storage, bounded hash) exist as
 * separate programs; user space enables the cheapest pair the kernel accepts. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "abi.h"
#include "syscall_regs.h"
#include "losses.h"
#include "log2_hist.h"
#include "scope.h"
#include "thread_store.h"
#include "hist.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Load-time filters, set by user space before load (the scope filter is in scope.h). */
const volatile bool filter_syscalls = false;
const volatile __u8 syscall_traced[MAX_SYSCALLS] = {};
/* btrace top's process list; off (and its map shrunk to one entry) for btrace hist. */
const volatile bool count_processes = false;
/* hist --by (enum hist_by): off by default, and then its code is dead. */
const volatile __u32 by = HIST_BY_NONE;
/* hist --errors (only failed calls) and --errno N (only calls failing with N). */
const volatile bool errors_only = false;
const volatile __u32 errno_only = 0;

/* Run-time setting, written by user space while attached (btrace top), in .bss: a read
 * is one load from a fixed address, so it costs nothing measurable when unused.
 * Entries stored before epoch_ns (before the programs were last detached) are stale and
 * ignored; user space sets it when it re-attaches. */
__u64 epoch_ns = 0;

/* Types user space reads from maps (keeps them in the skeleton's BTF). */
const volatile struct hist _hist_type = {};
const volatile struct proc_comm _proc_comm_type = {};
const volatile enum hist_limits _hist_limits_type = 0;
const volatile enum hist_by _hist_by_type = 0;
const volatile struct by_key _by_key_type = {};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SYSCALLS);
	__type(key, __u32);
	__type(value, struct hist);
} hists SEC(".maps");

/* The entry of each thread's syscall in flight: starts_task or starts_hash (user space
 * sets its bound, --max-threads); an entry is marked idle (ts_ns 0) at exit. */
DECLARE_THREAD_STORE(starts, struct syscall_start)

/* Syscalls completed per process, and the process's name; user space sets max_entries
 * (1 when not counting). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_PROCS);
	__type(key, __u32);
	__type(value, __u64);
} proc_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PROCS);
	__type(key, __u32);
	__type(value, struct proc_comm);
} proc_comms SEC(".maps");

/* The breakdown (hist --by): a histogram per (process, thread or cgroup; syscall), and
 * the names of processes and threads; user space sets the bounds (1 when off). Pairs
 * that find no room are not lost: they are in the per-syscall totals, and user space
 * reports total minus the listed pairs as "other". */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, BY_MAX_KEYS);
	__type(key, struct by_key);
	__type(value, struct hist);
} by_hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BY_MAX_KEYS);
	__type(key, __u64);
	__type(value, struct proc_comm);
} by_comms SEC(".maps");

/* NR_EXIT and NR_EXIT_GROUP never return: nothing would ever delete their entry. NR_CLONE,
 * NR_FORK, NR_VFORK and NR_CLONE3 return twice: in the child, with 0, an exit whose entry
 * was the parent's. (The architecture's numbers: syscall_regs.h.) */

/* The scope's load-time ids: checked on entry and exit (dead code when off). */
static __always_inline bool wanted_process(void)
{
	return scope_fixed_current(bpf_get_current_pid_tgid());
}

/* The whole scope, run-time part and name included: checked on entry only. An exit
 * records whatever entry its thread stored, so changing the run-time filter never pairs
 * an exit with a stale entry. */
static __always_inline bool wanted_now(void)
{
	return scope_current();
}

static __always_inline bool wanted_syscall(long nr)
{
	if (!filter_syscalls)
		return true;
	if (nr < 0 || nr >= MAX_SYSCALLS)
		return false;
	return syscall_traced[nr];
}

/* The fast path is one per-CPU lookup and an increment; the first count of a process
 * on a CPU also records its name. */
static __always_inline void count_process(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct proc_comm name;
	__u64 *c, one = 1;

	c = bpf_map_lookup_elem(&proc_counts, &tgid);
	if (c) {
		(*c)++;
		return;
	}
	if (bpf_map_update_elem(&proc_counts, &tgid, &one, BPF_NOEXIST)) {
		/* Another CPU may have created the key since the lookup; else the map is full. */
		c = bpf_map_lookup_elem(&proc_counts, &tgid);
		if (!c) {
			count_loss(LOSS_MAP_FULL);
			return;
		}
		(*c)++;
	}
	bpf_get_current_comm(name.comm, sizeof(name.comm));
	if (bpf_map_update_elem(&proc_comms, &tgid, &name, BPF_ANY))
		count_loss(LOSS_MAP_FULL);
}

/* The histogram slot of a syscall number: numbers beyond the table (x32, and anything
 * newer than MAX_SYSCALLS) and negative ones (a syscall skipped by seccomp or ptrace)
 * share the last slot, so no completed syscall goes uncounted. */
static __always_inline __u32 syscall_slot(long nr)
{
	return (nr < 0 || nr >= SYSCALL_OTHER) ? SYSCALL_OTHER : nr;
}

/* --errors / --errno: whether a call that returned `ret` is counted. */
static __always_inline bool ret_wanted(long ret)
{
	if (errno_only)
		return ret == -(long)errno_only;
	if (errors_only)
		return ret < 0 && ret >= -4095;
	return true;
}

static __always_inline void record_by(__u32 slot, __u64 ns)
{
	struct by_key k = { .nr = slot };
	__u64 id = bpf_get_current_pid_tgid();
	struct proc_comm name;
	struct hist *h;

	if (by == HIST_BY_PROCESS)
		k.id = id >> 32;
	else if (by == HIST_BY_THREAD)
		k.id = (__u32)id;
	else
		k.id = bpf_get_current_cgroup_id();
	h = bpf_map_lookup_elem(&by_hists, &k);
	if (!h) {
		struct hist zero = {};

		/* Fails when full (or when another CPU made it: then the lookup finds it). */
		bpf_map_update_elem(&by_hists, &k, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&by_hists, &k);
		if (!h)
			return;
		if (by != HIST_BY_CGROUP) {
			bpf_get_current_comm(name.comm, sizeof(name.comm));
			bpf_map_update_elem(&by_comms, &k.id, &name, BPF_NOEXIST);
		}
	}
	hist_add(h, ns);
}

static __always_inline void record(__u32 slot, __u64 start_ns)
{
	struct hist *h;
	__u64 ns;

	if (slot >= MAX_SYSCALLS)
		return;
	ns = bpf_ktime_get_ns() - start_ns;
	h = bpf_map_lookup_elem(&hists, &slot);
	if (h)
		hist_add(h, ns);
	if (by != HIST_BY_NONE)
		record_by(slot, ns);
	if (count_processes)
		count_process();
}

/* An exit with nothing stored counts as no_entry, unless filters excluded its entry or
 * it is a new task's return from clone/fork (nothing was lost: the parent's entry and
 * exit are recorded). */
static __always_inline void missing_entry(long nr, long ret)
{
	if (ret == 0 && (nr == NR_CLONE || nr == NR_FORK || nr == NR_VFORK || nr == NR_CLONE3))
		return;
	if (wanted_now() && wanted_syscall(nr))
		count_loss(LOSS_NO_ENTRY);
}

/* The exit half, whatever the store: `stored` finds this thread's entry (NULL when
 * none); a completed entry is marked idle (ts_ns 0). A macro so that nr_at_exit and ret
 * are only evaluated when no entry is found, off the fast path. */
#define EXIT_WITH(stored, nr_at_exit, ret)                           \
	do {                                                             \
		struct syscall_start *s;                                     \
		if (!wanted_process())                                       \
			return 0;                                                \
		s = (stored);                                                \
		if (!s || !s->ts_ns || s->ts_ns < epoch_ns) {                \
			missing_entry(nr_at_exit, ret);                          \
			return 0;                                                \
		}                                                            \
		if ((errors_only || errno_only) && !ret_wanted(ret)) {       \
			s->ts_ns = 0;                                            \
			return 0;                                                \
		}                                                            \
		record(s->nr, s->ts_ns);                                     \
		s->ts_ns = 0;                                                \
	} while (0)

/* ---- store: bounded hash keyed by thread id ---- */

static __always_inline void enter_hash(long nr)
{
	struct syscall_start *e, s = {};

	if (!wanted_now() || !wanted_syscall(nr) || nr == NR_EXIT || nr == NR_EXIT_GROUP)
		return;
	/* Only this thread writes its entry, so an in-place write races with nothing. */
	e = starts_hash_get();
	if (e) {
		e->nr = syscall_slot(nr);
		e->ts_ns = bpf_ktime_get_ns();
		return;
	}
	s.ts_ns = bpf_ktime_get_ns();
	s.nr = syscall_slot(nr);
	if (!starts_hash_add(&s))
		count_loss(LOSS_MAP_FULL);
}

/* ---- store: task storage ---- */

static __always_inline void enter_task(long nr)
{
	struct syscall_start *s;

	if (!wanted_now() || !wanted_syscall(nr))
		return;
	s = starts_task_get(true);
	if (!s) {
		count_loss(LOSS_MAP_FULL);
		return;
	}
	s->nr = syscall_slot(nr);
	s->ts_ns = bpf_ktime_get_ns();
}

/* ---- tp_btf: arguments are typed, read directly ---- */

SEC("tp_btf/sys_enter")
int BPF_PROG(hist_enter_btf_task, struct pt_regs *regs, long id)
{
	enter_task(id);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(hist_exit_btf_task, struct pt_regs *regs, long ret)
{
	EXIT_WITH(starts_task_get(false),
		  SYSCALL_NR(regs), ret);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(hist_enter_btf_hash, struct pt_regs *regs, long id)
{
	enter_hash(id);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(hist_exit_btf_hash, struct pt_regs *regs, long ret)
{
	EXIT_WITH(starts_hash_get(), SYSCALL_NR(regs), ret);
	return 0;
}

/* ---- raw_tp: same arguments, untyped; pt_regs read through CO-RE ---- */

SEC("raw_tp/sys_enter")
int BPF_PROG(hist_enter_raw, struct pt_regs *regs, long id)
{
	enter_hash(id);
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(hist_exit_raw, struct pt_regs *regs, long ret)
{
	EXIT_WITH(starts_hash_get(), SYSCALL_NR_CORE(regs), ret);
	return 0;
}

/* ---- classic tracepoint: the stable raw_syscalls format ---- */

SEC("tracepoint/raw_syscalls/sys_enter")
int hist_enter_tp(struct trace_event_raw_sys_enter *ctx)
{
	enter_hash(ctx->id);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int hist_exit_tp(struct trace_event_raw_sys_exit *ctx)
{
	EXIT_WITH(starts_hash_get(), ctx->id, ctx->ret);
	return 0;
}

/* ---- process names: a counted process that calls exec gets its new name ---- */

SEC("raw_tp/sched_process_exec")
int BPF_PROG(hist_exec_comm)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct proc_comm name;
	__u64 key;

	bpf_get_current_comm(name.comm, sizeof(name.comm));
	if (count_processes && bpf_map_lookup_elem(&proc_comms, &tgid))
		bpf_map_update_elem(&proc_comms, &tgid, &name, BPF_EXIST);
	if (by == HIST_BY_PROCESS || by == HIST_BY_THREAD) {
		key = by == HIST_BY_PROCESS ? tgid : (__u32)id;
		bpf_map_update_elem(&by_comms, &key, &name, BPF_EXIST);
	}
	return 0;
}
