/* SPDX-License-Identifier: GPL-2.0 */
/* Reading strings whose address may be user or kernel memory. */
#ifndef BTRACE_STRINGS_H
#define BTRACE_STRINGS_H

/* A string at an address that may be user or kernel memory: user first (syscall
 * arguments), then kernel. An unreadable string is left empty. */
static __always_inline void read_any_str(char *dst, __u32 size, const void *src)
{
	if (bpf_probe_read_user_str(dst, size, src) < 0 &&
	    bpf_probe_read_kernel_str(dst, size, src) < 0)
		dst[0] = 0;
}

#endif
