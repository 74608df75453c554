// SPDX-License-Identifier: GPL-2.0
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
#include "btrace.h"
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

/* Load-time filters, set by user space before load. */
const volatile __u32 filter_tgid = 0;
const volatile bool filter_syscalls = false;
const volatile __u8 syscall_traced[MAX_SYSCALLS] = {};
/* btrace top's process list; off (and its map shrunk to one entry) for btrace hist. */
const volatile bool count_processes = false;

/* Run-time settings, written by user space while attached (btrace top), in .bss: a read
 * is one load from a fixed address, so they cost nothing measurable when unused.
 * live_tgid: only this process's syscalls are recorded (0 = all).
 * epoch_ns: entries stored before this time (before the programs were last detached)
 * are stale and ignored; user space sets it when it re-attaches. */
__u32 live_tgid = 0;
__u64 epoch_ns = 0;

/* Types user space reads from maps (keeps them in the skeleton's BTF). */
struct hist _hist_type = {};
struct proc_comm _proc_comm_type = {};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SYSCALLS);
	__type(key, __u32);
	__type(value, struct hist);
} hists SEC(".maps");

/* Bounded per-thread store; user space sets max_entries (--max-threads). A thread's
 * entry is made at its first traced syscall, rewritten in place at every later one,
 * marked idle (ts_ns 0) at exit, and removed when the thread ends (hist_reap_*): an
 * update and a delete per syscall would cost about twice as much. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct syscall_start);
} starts_hash SEC(".maps");

/* Unbounded per-thread store, freed with the task (5.11+). Not created on kernels
 * that lack it: user space turns its autocreate off. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct syscall_start);
} starts_task SEC(".maps");

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

DECLARE_LOSSES()

/* x86_64 exit and exit_group never return: nothing would ever delete their entry. */
#define NR_EXIT 60
#define NR_EXIT_GROUP 231
/* ... and these return twice: in the child, with 0, an exit whose entry was the parent's. */
#define NR_CLONE 56
#define NR_FORK 57
#define NR_VFORK 58
#define NR_CLONE3 435

/* The load-time filter: checked on entry and exit (dead code when off). */
static __always_inline bool wanted_process(void)
{
	if (!filter_tgid)
		return true;
	return (bpf_get_current_pid_tgid() >> 32) == filter_tgid;
}

/* The run-time filter: checked on entry only. An exit records whatever entry its thread
 * stored, so changing the filter never pairs an exit with a stale entry. */
static __always_inline bool wanted_now(void)
{
	__u32 want = live_tgid;

	return !want || (bpf_get_current_pid_tgid() >> 32) == want;
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

static __always_inline void record(__u32 nr, __u64 start_ns)
{
	struct hist *h;

	if (nr >= MAX_SYSCALLS)
		return;
	h = bpf_map_lookup_elem(&hists, &nr);
	if (h)
		hist_add(h, bpf_ktime_get_ns() - start_ns);
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
		record(s->nr, s->ts_ns);                                     \
		s->ts_ns = 0;                                                \
	} while (0)

/* ---- store: bounded hash keyed by thread id ---- */

/* This thread's entry, NULL when it has none. */
static __always_inline struct syscall_start *stored_hash(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	return bpf_map_lookup_elem(&starts_hash, &tid);
}

static __always_inline void enter_hash(long nr)
{
	struct syscall_start *e, s = {};
	__u32 tid;

	if (!wanted_process() || !wanted_now() || !wanted_syscall(nr) || nr == NR_EXIT ||
	    nr == NR_EXIT_GROUP)
		return;
	/* Only this thread writes its entry, so an in-place write races with nothing. */
	e = stored_hash();
	if (e) {
		e->nr = nr;
		e->ts_ns = bpf_ktime_get_ns();
		return;
	}
	tid = (__u32)bpf_get_current_pid_tgid();
	s.ts_ns = bpf_ktime_get_ns();
	s.nr = nr;
	if (bpf_map_update_elem(&starts_hash, &tid, &s, BPF_NOEXIST))
		count_loss(LOSS_MAP_FULL);
}

/* A thread that ends frees its entry (a no-op for threads that never made a traced
 * syscall). Runs in the exiting thread, also when it died inside a syscall. */
static __always_inline void reap_hash(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&starts_hash, &tid);
}

SEC("raw_tp/sched_process_exit")
int BPF_PROG(hist_reap_raw)
{
	reap_hash();
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int hist_reap_tp(void *ctx)
{
	reap_hash();
	return 0;
}

/* ---- store: task storage ---- */

static __always_inline void enter_task(long nr)
{
	struct syscall_start *s;

	if (!wanted_process() || !wanted_now() || !wanted_syscall(nr))
		return;
	s = bpf_task_storage_get(&starts_task, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s) {
		count_loss(LOSS_MAP_FULL);
		return;
	}
	s->nr = nr;
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
	EXIT_WITH(bpf_task_storage_get(&starts_task, bpf_get_current_task_btf(), 0, 0),
		  regs->orig_ax, ret);
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
	EXIT_WITH(stored_hash(), regs->orig_ax, ret);
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
	EXIT_WITH(stored_hash(), BPF_CORE_READ(regs, orig_ax), ret);
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
	EXIT_WITH(stored_hash(), ctx->id, ctx->ret);
	return 0;
}

/* ---- process names: a counted process that calls exec gets its new name ---- */

SEC("raw_tp/sched_process_exec")
int BPF_PROG(hist_exec_comm)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct proc_comm name;

	if (!bpf_map_lookup_elem(&proc_comms, &tgid))
		return 0;
	bpf_get_current_comm(name.comm, sizeof(name.comm));
	bpf_map_update_elem(&proc_comms, &tgid, &name, BPF_EXIST);
	return 0;
}
