/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The syscall number in the pt_regs a sys_exit hook gets, for each architecture: x86 keeps
 * it in orig_ax, arm64 in syscallno (a signed 32-bit field). SYSCALL_NR for a typed pointer
 * (tp_btf: read directly), SYSCALL_NR_CORE for an untyped one (raw_tp: through CO-RE). */
#ifndef BTRACE_SYSCALL_REGS_H
#define BTRACE_SYSCALL_REGS_H

#if defined(__TARGET_ARCH_x86)
#define SYSCALL_NR_FIELD orig_ax
#elif defined(__TARGET_ARCH_arm64)
#define SYSCALL_NR_FIELD syscallno
#else
#error "syscall_regs.h: no syscall number field for this architecture"
#endif

#define SYSCALL_NR(regs) ((long)(regs)->SYSCALL_NR_FIELD)
#define SYSCALL_NR_CORE(regs) ((long)BPF_CORE_READ(regs, SYSCALL_NR_FIELD))

#endif
