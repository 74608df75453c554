/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The errno values libbpf's <bpf/usdt.bpf.h> returns (it includes <linux/errno.h>, which
 * wants the architecture's <asm/errno.h>: not on the BPF target's include path). The
 * numbers are the kernel's generic ones, the same on every architecture. */
#ifndef BTRACE_ASM_ERRNO_H
#define BTRACE_ASM_ERRNO_H

#define ENOENT 2
#define ESRCH 3
#define E2BIG 7
#define EINVAL 22

#endif
