/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Reading strings, bounded buffers and char ** lists into string slots (struct str_hdr in
 * abi.h): the bytes and how many, and whether they were cut, never a NUL-terminated guess.
 * Addresses may be user or kernel memory: user is tried first (syscall arguments), then
 * kernel. `size` is the string size (--string-size), a load-time constant, so every
 * length below has a bound the verifier knows. */
#ifndef BTRACE_STRINGS_H
#define BTRACE_STRINGS_H

#include "abi.h"

/* The bytes of string slot `h`. */
static __always_inline char *str_data(struct str_hdr *h)
{
	return (char *)(h + 1);
}

/* A NUL-terminated string at `src`: at most `size` bytes kept. One more byte than kept is
 * read (the slot has room for size + 2: that byte and the NUL) to know whether the string
 * went on; if it did, the slot is marked STR_TRUNCATED. */
static __always_inline void read_str(struct str_hdr *h, __u32 size, const void *src)
{
	long n = bpf_probe_read_user_str(str_data(h), size + 2, src);

	if (n < 0)
		n = bpf_probe_read_kernel_str(str_data(h), size + 2, src);
	if (n <= 0) {
		h->len = 0;
		h->flags = STR_FAULT;
		return;
	}
	n -= 1; /* the NUL */
	if (n > size) {
		h->len = size;
		h->flags = STR_TRUNCATED;
	} else {
		h->len = n;
		h->flags = 0;
	}
}

/* A buffer of `len` bytes at `src` (a pointer with its length beside it): at most `size`
 * of them kept, the slot marked STR_TRUNCATED when there were more. NULs are data here:
 * nothing past `len` is read. */
static __always_inline void read_buf(struct str_hdr *h, __u32 size, const void *src, __u64 len)
{
	__u32 flags = 0;

	if (len > size) {
		len = size;
		flags = STR_TRUNCATED;
	}
	if (bpf_probe_read_user(str_data(h), len, src) &&
	    bpf_probe_read_kernel(str_data(h), len, src)) {
		h->len = 0;
		h->flags = STR_FAULT;
		return;
	}
	h->len = len;
	h->flags = flags;
}

/* A NULL-terminated array of string pointers (execve's argv) at `list`: up to ARGV_MAX
 * items, each a string slot of `slot_bytes` after the list's header. The header's len is
 * the number of items read; STR_TRUNCATED when the list went on beyond ARGV_MAX, STR_FAULT
 * when the array itself could not be read (the items before stay). */
static __always_inline void read_argv(struct str_hdr *h, __u32 size, __u32 slot_bytes,
				      const void *list)
{
	const void *p = NULL;
	__u32 n = 0;

	h->flags = 0;
#pragma clang loop unroll(disable)
	for (__u32 k = 0; k < ARGV_MAX; k++) {
		if (bpf_probe_read_user(&p, sizeof(p), list + k * sizeof(p)) &&
		    bpf_probe_read_kernel(&p, sizeof(p), list + k * sizeof(p))) {
			h->flags = STR_FAULT;
			break;
		}
		if (!p)
			break;
		read_str((void *)str_data(h) + k * slot_bytes, size, p);
		n++;
	}
	if (n == ARGV_MAX) {
		p = NULL;
		if (bpf_probe_read_user(&p, sizeof(p), list + ARGV_MAX * sizeof(p)) &&
		    bpf_probe_read_kernel(&p, sizeof(p), list + ARGV_MAX * sizeof(p)))
			p = NULL;
		if (p)
			h->flags = STR_TRUNCATED;
	}
	h->len = n;
}

#endif
