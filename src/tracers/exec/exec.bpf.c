// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace exec: every execve and execveat call, with the program, its arguments, the
 * parent and the result, failed calls included.
 *
 * Entry copies the filename and the argument list into a per-thread record (a successful
 * exec replaces the caller's memory, so they cannot be read later); exit completes it
 * with the return value, the parent and the (new) name and sends it through a ring
 * buffer. A non-leader thread's exec takes over its process's id: sched_process_exec
 * moves the record to the new thread id.
 *
 * A string whose page is not mapped at entry cannot be read then (programs cannot take
 * page faults: e.g. a constant of a child just forked). The kernel copies the strings
 * during the call, so what faulted is read again later: for a failed call at exit, from
 * the caller's memory; for a successful one at sched_process_exec, the filename the kernel
 * keeps (bprm->filename) and the arguments from the new program's stack, where the kernel
 * has just put them (the initial stack: argc, then the argv pointers). Two hooks, as separate programs: the
 * syscalls:sys_{enter,exit}_execve* tracepoints (run only for these calls) and raw_tp
 * sys_enter/sys_exit filtered by number where those tracepoints do not exist. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "abi.h"
#include "syscall_regs.h"
#include "losses.h"
#include "scope.h"
#include "strings.h"
#include "task_event.h"
#include "exec.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile bool fails_only = false; /* --fails */

/* Types user space reads (kept in the skeleton's BTF). */
const volatile struct exec_event _exec_event_type = {};
const volatile enum exec_call _exec_call_type = 0;
const volatile enum exec_limits _exec_limits_type = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);
} events SEC(".maps");

/* Execs in flight, by thread id (user space sets the bound). Preallocated: every kernel
 * lets tracepoint programs use it. An entry lives from entry to exit of one call. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EXEC_MAX_INFLIGHT);
	__type(key, __u32);
	__type(value, struct exec_event);
} exec_inflight SEC(".maps");

/* One bit per thread id (user space sizes it to pid_max): set when the thread's exec
 * was not recorded because exec_inflight was full (counted then, as map_full), so its
 * exit does not count the same loss again as an exit without an entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} exec_dropped SEC(".maps");

/* Sets or clears `tid`'s bit; only the thread itself changes it. */
static __always_inline void dropped_set(__u32 tid, bool on)
{
	__u32 idx = tid / 64;

	bitset_word_set(bpf_map_lookup_elem(&exec_dropped, &idx), tid, on);
}

/* Whether `tid`'s exec was dropped (and counted) at entry; clears the mark. */
static __always_inline bool dropped_take(__u32 tid)
{
	__u32 idx = tid / 64;
	__u64 *w = bpf_map_lookup_elem(&exec_dropped, &idx);
	__u64 bit = 1ULL << (tid & 63);

	if (!w || !(*w & bit))
		return false;
	__sync_fetch_and_add(w, -bit);
	return true;
}

/* An all-zero record, the initial value of a new entry (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_event);
} exec_zero SEC(".maps");

/* The raw_tp hooks pick execve and execveat by number (syscall_regs.h). */

static __always_inline void enter(__u32 call, __s32 dfd, const void *fname, const void *argv,
				  __u32 at_flags)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), zero = 0;
	struct exec_event *e, *z;

	if (!scope_current())
		return;
	z = bpf_map_lookup_elem(&exec_zero, &zero);
	if (!z)
		return;
	if (bpf_map_update_elem(&exec_inflight, &tid, z, BPF_ANY)) {
		count_loss(LOSS_MAP_FULL);
		dropped_set(tid, true);
		return;
	}
	/* A mark left by a thread that died inside a dropped exec is not this exec's. */
	dropped_set(tid, false);
	e = bpf_map_lookup_elem(&exec_inflight, &tid);
	if (!e)
		return;
	e->call = call;
	e->dfd = dfd;
	e->at_flags = at_flags;
	e->fname_ptr = (__u64)fname;
	e->argv_ptr = (__u64)argv;
	read_str(&e->path.h, EXEC_PATH_SIZE, fname);
	/* A NULL argv is an empty list (Linux accepts it). */
	if (argv)
		read_argv(&e->argv.h, EXEC_ARG_SIZE, sizeof(struct exec_arg_slot), argv);
}

/* Whether the argument list (or one of its items) could not be read. */
static __always_inline bool argv_faulted(struct exec_event *e)
{
	__u32 n = e->argv.h.len;

	if (e->argv.h.flags & STR_FAULT)
		return true;
	for (__u32 k = 0; k < ARGV_MAX; k++) {
		if (k >= n)
			break;
		if (e->argv.items[k].h.flags & STR_FAULT)
			return true;
	}
	return false;
}

/* Reads again what faulted at entry: the filename from `fname`, the list from `argv`. */
static __always_inline void read_again(struct exec_event *e, const void *fname, const void *argv)
{
	if (e->path.h.flags & STR_FAULT)
		read_str(&e->path.h, EXEC_PATH_SIZE, fname);
	if (argv && argv_faulted(e))
		read_argv(&e->argv.h, EXEC_ARG_SIZE, sizeof(struct exec_arg_slot), argv);
}

static __always_inline void leave(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, n;
	struct task_struct *task;
	struct exec_event *e;
	char comm[COMM_LEN];
	__u64 len;

	e = bpf_map_lookup_elem(&exec_inflight, &tid);
	if (!e) {
		/* Dropped at entry: already counted as map_full, one loss counted once. */
		if (!dropped_take(tid) && scope_current())
			count_loss(LOSS_NO_ENTRY);
		return;
	}
	if (!fails_only || ret < 0) {
		if (ret < 0)
			read_again(e, (const void *)e->fname_ptr, (const void *)e->argv_ptr);
		bpf_get_current_comm(comm, sizeof(comm));
		fill_task_hdr(&e->hdr, id, comm);
		e->ret = ret;
		task = (struct task_struct *)bpf_get_current_task();
		e->ppid = BPF_CORE_READ(task, real_parent, tgid);
		n = e->argv.h.len;
		if (n > ARGV_MAX)
			n = ARGV_MAX;
		len = __builtin_offsetof(struct exec_event, argv.items) +
		      (__u64)n * sizeof(struct exec_arg_slot);
		if (len > sizeof(*e))
			len = sizeof(*e);
		if (bpf_ringbuf_output(&events, e, len, 0))
			count_loss(LOSS_RINGBUF);
	}
	bpf_map_delete_elem(&exec_inflight, &tid);
}

/* The exec succeeded (sched_process_exec, in the new program). A thread other than the
 * leader that execs takes over the process's id (de_thread): its record moves with it.
 * What faulted at entry is read from what the kernel copied: `kfname` (kernel memory)
 * and the new initial stack. */
static __always_inline void exec_done(__u32 old_tid, const void *kfname)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct exec_event *e;
	__u64 stack;

	e = bpf_map_lookup_elem(&exec_inflight, &old_tid);
	if (!e) {
		/* A dropped exec's mark moves with the thread that takes over the id. */
		if (old_tid != tid && dropped_take(old_tid))
			dropped_set(tid, true);
		return;
	}
	if (old_tid != tid) {
		if (bpf_map_update_elem(&exec_inflight, &tid, e, BPF_ANY)) {
			count_loss(LOSS_MAP_FULL);
			dropped_set(tid, true);
		}
		bpf_map_delete_elem(&exec_inflight, &old_tid);
		e = bpf_map_lookup_elem(&exec_inflight, &tid);
		if (!e)
			return;
	}
	task = (struct task_struct *)bpf_get_current_task();
	stack = BPF_CORE_READ(task, mm, start_stack);
	read_again(e, kfname, stack ? (const void *)(stack + sizeof(long)) : NULL);
}

/* ---- syscall tracepoints ---- */

SEC("tracepoint/syscalls/sys_enter_execve")
int exec_enter_execve(struct trace_event_raw_sys_enter *ctx)
{
	enter(EXEC_CALL_EXECVE, -100, (const void *)ctx->args[0], (const void *)ctx->args[1], 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int exec_enter_execveat(struct trace_event_raw_sys_enter *ctx)
{
	enter(EXEC_CALL_EXECVEAT, ctx->args[0], (const void *)ctx->args[1],
	      (const void *)ctx->args[2], ctx->args[4]);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int exec_exit_execve(struct trace_event_raw_sys_exit *ctx)
{
	leave(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execveat")
int exec_exit_execveat(struct trace_event_raw_sys_exit *ctx)
{
	leave(ctx->ret);
	return 0;
}

/* ---- raw_tp on every syscall, filtered by number ---- */

SEC("raw_tp/sys_enter")
int BPF_PROG(exec_enter_raw, struct pt_regs *regs, long id)
{
	if (id == NR_EXECVE)
		enter(EXEC_CALL_EXECVE, -100, (const void *)PT_REGS_PARM1_CORE_SYSCALL(regs),
		      (const void *)PT_REGS_PARM2_CORE_SYSCALL(regs), 0);
	else if (id == NR_EXECVEAT)
		enter(EXEC_CALL_EXECVEAT, PT_REGS_PARM1_CORE_SYSCALL(regs),
		      (const void *)PT_REGS_PARM2_CORE_SYSCALL(regs),
		      (const void *)PT_REGS_PARM3_CORE_SYSCALL(regs),
		      PT_REGS_PARM5_CORE_SYSCALL(regs));
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(exec_exit_raw, struct pt_regs *regs, long ret)
{
	long nr = SYSCALL_NR_CORE(regs);

	if (nr == NR_EXECVE || nr == NR_EXECVEAT)
		leave(ret);
	return 0;
}

SEC("raw_tp/sched_process_exec")
int BPF_PROG(exec_moved_raw, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	exec_done(old_pid, BPF_CORE_READ(bprm, filename));
	return 0;
}
