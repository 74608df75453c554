// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace open: every open, openat, openat2 and creat call, with its path, flags, mode
 * and result.
 *
 * Entry keeps the call's arguments per thread (the path's address, flags, mode); exit
 * reads the path, applies --path-prefix and --fails, and sends one record through a ring
 * buffer. Two hooks exist as separate programs: the syscalls:sys_{enter,exit}_open*
 * tracepoints (run only for these calls: nothing for any other syscall) and, for kernels
 * without syscall tracepoints, raw_tp sys_enter/sys_exit filtered by syscall number. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "abi.h"
#include "syscall_regs.h"
#include "losses.h"
#include "rb_wakeup.h"
#include "scope.h"
#include "strings.h"
#include "task_event.h"
#include "thread_store.h"
#include "opens.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load. */
const volatile __u32 str_size = STR_SIZE_DEFAULT;  /* bytes kept of the path */
const volatile __u32 rec_size = 0;                 /* a whole record, slot included */
const volatile bool fails_only = false;            /* --fails */
const volatile __u32 prefix_len = 0;               /* --path-prefix: its length (0: off) */
const volatile char path_prefix[OPEN_PREFIX_MAX] = {};

/* Types user space reads (kept in the skeleton's BTF). */
const volatile struct open_event _open_event_type = {};
const volatile enum open_call _open_call_type = 0;
const volatile enum open_limits _open_limits_type = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* user space sets the size */
} events SEC(".maps");

/* One entry per thread that opened a file, rewritten in place, freed when the thread
 * ends (only the hash is used: these hooks cannot use task storage on older kernels). */
DECLARE_THREAD_STORE(ostarts, struct open_start)

/* The raw_tp hooks pick their calls by number (syscall_regs.h; the tracepoints name theirs). */
#define O_CREAT_WRONLY_TRUNC (0100 | 01 | 01000)

static __always_inline void enter(__u32 call, __s32 dfd, const void *fname, __u64 flags,
				  __u64 mode)
{
	struct open_start *e, s = {};

	if (!scope_current())
		return;
	e = ostarts_hash_get();
	if (!e) {
		if (!ostarts_hash_add(&s)) {
			count_loss(LOSS_MAP_FULL);
			return;
		}
		e = ostarts_hash_get();
		if (!e)
			return;
	}
	e->fname = (__u64)fname;
	e->flags = flags;
	e->mode = mode;
	e->dfd = dfd;
	e->call = call;
}

/* openat2's flags and mode are in a struct open_how in user memory. */
static __always_inline void enter_openat2(__s32 dfd, const void *fname, const void *how)
{
	__u64 fm[2] = {};

	bpf_probe_read_user(fm, sizeof(fm), how);
	enter(OPEN_CALL_OPENAT2, dfd, fname, fm[0], fm[1]);
}

/* Whether the path starts with --path-prefix (read again here: only its first bytes). */
static __always_inline bool prefix_ok(const void *fname)
{
	char head[OPEN_PREFIX_MAX + 1];
	long n;

	if (!prefix_len)
		return true;
	if (prefix_len > OPEN_PREFIX_MAX)
		return false;
	n = bpf_probe_read_user_str(head, prefix_len + 1, fname);
	if (n <= 0 || (__u64)(n - 1) < prefix_len)
		return false;
	for (__u32 i = 0; i < OPEN_PREFIX_MAX; i++) {
		if (i >= prefix_len)
			break;
		if (head[i] != path_prefix[i])
			return false;
	}
	return true;
}

static __always_inline void leave(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct open_start *s = ostarts_hash_get();
	struct open_event *ev;
	char comm[COMM_LEN];
	const void *fname;

	if (!s || !s->fname) {
		/* Begun before tracing (or its entry was dropped), unless not in scope. */
		if (scope_current())
			count_loss(LOSS_NO_ENTRY);
		return;
	}
	fname = (const void *)s->fname;
	s->fname = 0;
	if (fails_only && ret >= 0)
		return;
	if (!prefix_ok(fname))
		return;
	ev = bpf_ringbuf_reserve(&events, rec_size, 0);
	if (!ev) {
		count_loss(LOSS_RINGBUF);
		return;
	}
	bpf_get_current_comm(comm, sizeof(comm));
	fill_task_hdr(&ev->hdr, id, comm);
	ev->ret = ret;
	ev->flags = s->flags;
	ev->mode = s->mode;
	ev->dfd = s->dfd;
	ev->call = s->call;
	read_str((struct str_hdr *)(ev + 1), str_size, fname);
	bpf_ringbuf_submit(ev, rb_wakeup_flags(&events, ev->hdr.ts_ns));
}

/* ---- syscall tracepoints: only these calls run a program ---- */

SEC("tracepoint/syscalls/sys_enter_open")
int open_enter_open(struct trace_event_raw_sys_enter *ctx)
{
	enter(OPEN_CALL_OPEN, -100, (const void *)ctx->args[0], ctx->args[1], ctx->args[2]);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int open_enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	enter(OPEN_CALL_OPENAT, ctx->args[0], (const void *)ctx->args[1], ctx->args[2],
	      ctx->args[3]);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int open_enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
	enter_openat2(ctx->args[0], (const void *)ctx->args[1], (const void *)ctx->args[2]);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_creat")
int open_enter_creat(struct trace_event_raw_sys_enter *ctx)
{
	enter(OPEN_CALL_CREAT, -100, (const void *)ctx->args[0], O_CREAT_WRONLY_TRUNC,
	      ctx->args[1]);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_open")
int open_exit_open(struct trace_event_raw_sys_exit *ctx)
{
	leave(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int open_exit_openat(struct trace_event_raw_sys_exit *ctx)
{
	leave(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int open_exit_openat2(struct trace_event_raw_sys_exit *ctx)
{
	leave(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_creat")
int open_exit_creat(struct trace_event_raw_sys_exit *ctx)
{
	leave(ctx->ret);
	return 0;
}

/* ---- raw_tp on every syscall, filtered by number (kernels without syscall
 * tracepoints, CONFIG_FTRACE_SYSCALLS unset) ---- */

SEC("raw_tp/sys_enter")
int BPF_PROG(open_enter_raw, struct pt_regs *regs, long id)
{
	switch (id) {
	case NR_OPEN:
		enter(OPEN_CALL_OPEN, -100, (const void *)PT_REGS_PARM1_CORE_SYSCALL(regs),
		      PT_REGS_PARM2_CORE_SYSCALL(regs), PT_REGS_PARM3_CORE_SYSCALL(regs));
		break;
	case NR_OPENAT:
		enter(OPEN_CALL_OPENAT, PT_REGS_PARM1_CORE_SYSCALL(regs),
		      (const void *)PT_REGS_PARM2_CORE_SYSCALL(regs),
		      PT_REGS_PARM3_CORE_SYSCALL(regs), PT_REGS_PARM4_CORE_SYSCALL(regs));
		break;
	case NR_OPENAT2:
		enter_openat2(PT_REGS_PARM1_CORE_SYSCALL(regs),
			      (const void *)PT_REGS_PARM2_CORE_SYSCALL(regs),
			      (const void *)PT_REGS_PARM3_CORE_SYSCALL(regs));
		break;
	case NR_CREAT:
		enter(OPEN_CALL_CREAT, -100, (const void *)PT_REGS_PARM1_CORE_SYSCALL(regs),
		      O_CREAT_WRONLY_TRUNC, PT_REGS_PARM2_CORE_SYSCALL(regs));
		break;
	}
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(open_exit_raw, struct pt_regs *regs, long ret)
{
	long nr = SYSCALL_NR_CORE(regs);

	if (nr == NR_OPEN || nr == NR_OPENAT || nr == NR_OPENAT2 || nr == NR_CREAT)
		leave(ret);
	return 0;
}
