/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The syscall number in the pt_regs a sys_exit hook gets, for each architecture: x86 keeps
 * it in orig_ax, arm64 in syscallno (a signed 32-bit field). SYSCALL_NR for a typed pointer
 * (tp_btf: read directly), SYSCALL_NR_CORE for an untyped one (raw_tp: through CO-RE).
 * Below them, the architecture's numbers of the syscalls the programs pick out. */
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

/* The syscall numbers the raw_tp hooks and hist's exit bookkeeping compare against, per
 * architecture (<asm/unistd.h>: arch/x86/entry/syscalls/syscall_64.tbl; arm64 uses
 * asm-generic's table). arm64 has no open, creat, fork or vfork: those get distinct numbers
 * no syscall has (below -1, the number of a skipped syscall), so comparisons and switch
 * cases stay as they are and never match. */
#if defined(__TARGET_ARCH_x86)
#define NR_OPEN 2
#define NR_CLONE 56
#define NR_FORK 57
#define NR_VFORK 58
#define NR_EXECVE 59
#define NR_EXIT 60
#define NR_CREAT 85
#define NR_EXIT_GROUP 231
#define NR_OPENAT 257
#define NR_EXECVEAT 322
#define NR_CLONE3 435
#define NR_OPENAT2 437
#elif defined(__TARGET_ARCH_arm64)
#define NR_OPEN (-2)
#define NR_CREAT (-3)
#define NR_FORK (-4)
#define NR_VFORK (-5)
#define NR_OPENAT 56
#define NR_EXIT 93
#define NR_EXIT_GROUP 94
#define NR_CLONE 220
#define NR_EXECVE 221
#define NR_EXECVEAT 281
#define NR_CLONE3 435
#define NR_OPENAT2 437
#endif

#endif
