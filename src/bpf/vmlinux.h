/* SPDX-License-Identifier: GPL-2.0 */
/* The kernel's types for CO-RE programs, per architecture: each copy is dumped from one
 * kernel's BTF (`make vmlinux`); libbpf relocates every field access against the running
 * kernel's BTF at load time, so the copy's own kernel version does not matter. The arm64
 * copy comes from Debian's 6.12 arm64 cloud kernel (tests/vm/arm64-vmlinux.sh). */
#if defined(__TARGET_ARCH_x86)
#include "x86/vmlinux.h"
#elif defined(__TARGET_ARCH_arm64)
#include "arm64/vmlinux.h"
#else
#error "btrace has a vmlinux.h for x86 and arm64 only; add src/bpf/<arch>/vmlinux.h (make vmlinux on that architecture)"
#endif
