/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Reading registers, the one place that knows an architecture's pt_regs: a syscall's
 * number and arguments in the pt_regs of the sys_enter/sys_exit hooks, a probed
 * function's arguments in a kprobe's or uprobe's. libbpf's bpf_tracing.h maps the
 * PT_REGS_* names to each architecture's registers from __TARGET_ARCH_*; the syscall
 * number's field is named here.
 *
 * Syscall numbers differ between architectures too: a program never types them in. It
 * declares each one it compares against with SYSCALL_NR_VAR(name), and user space sets it
 * before load from the target architecture's table (resolve/syscalls.rs number_or). */
#ifndef BTRACE_REGS_H
#define BTRACE_REGS_H

#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

/* x86 keeps the number in orig_ax, arm64 in syscallno (a signed 32-bit field). */
#if defined(__TARGET_ARCH_x86)
#define SYSCALL_NR_FIELD orig_ax
#elif defined(__TARGET_ARCH_arm64)
#define SYSCALL_NR_FIELD syscallno
#else
#error "regs.h: no syscall number field for this architecture"
#endif

/* The syscall number in the pt_regs a sys_exit hook gets: SYSCALL_NR for a typed pointer
 * (tp_btf: read directly), SYSCALL_NR_CORE for an untyped one (raw_tp: through CO-RE). */
#define SYSCALL_NR(regs) ((long)(regs)->SYSCALL_NR_FIELD)
#define SYSCALL_NR_CORE(regs) ((long)BPF_CORE_READ(regs, SYSCALL_NR_FIELD))

/* Argument N (1 to 6) of the syscall in the pt_regs a raw_tp sys_enter hook gets. */
#define SYSCALL_ARG_CORE(regs, N) PT_REGS_PARM##N##_CORE_SYSCALL(regs)

/* The number of syscall NAME on the target architecture, as rodata `nr_NAME`. Where the
 * architecture has no such call (arm64 has no open, creat, fork or vfork) it keeps
 * SYSCALL_NR_NONE, which no number a hook sees equals: the ids sys_enter passes and
 * arm64's syscallno are 32-bit; on x86_64, which has every call btrace names, orig_ax
 * could hold any 64-bit value but is never compared against it. */
#define SYSCALL_NR_NONE (-(1LL << 40))
#define SYSCALL_NR_VAR(NAME) const volatile long nr_##NAME = SYSCALL_NR_NONE

/* Program PROG on the classic tracepoint syscalls:sys_exit_CALL, which passes the call's
 * return value to FN (the record's stable format: no register read). */
#define SYSCALL_EXIT_TP(PROG, CALL, FN)                          \
	SEC("tracepoint/syscalls/sys_exit_" #CALL)               \
	int PROG(struct trace_event_raw_sys_exit *ctx)           \
	{                                                        \
		FN(ctx->ret);                                    \
		return 0;                                        \
	}

/* The first `n` (a load-time constant, at most 6) arguments of a probed function, from
 * the registers of its kprobe or uprobe; reads beyond `n` are dead code. */
static __always_inline void func_args_from_regs(struct pt_regs *ctx, __u64 *args, __u32 n)
{
	if (n > 0) args[0] = PT_REGS_PARM1(ctx);
	if (n > 1) args[1] = PT_REGS_PARM2(ctx);
	if (n > 2) args[2] = PT_REGS_PARM3(ctx);
	if (n > 3) args[3] = PT_REGS_PARM4(ctx);
	if (n > 4) args[4] = PT_REGS_PARM5(ctx);
	if (n > 5) args[5] = PT_REGS_PARM6(ctx);
}

#endif
