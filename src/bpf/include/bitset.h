/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* One bit per id in words of 64 (an array map of __u64, looked up by the caller), set
 * and cleared with atomic adds, which every kernel has (atomic OR/AND on maps need
 * 5.12): a bit is set only while clear and cleared only while set, so the add never
 * carries into a neighbour as long as one writer owns each bit (the process forking or
 * ending, the thread itself). */
#ifndef BTRACE_BITSET_H
#define BTRACE_BITSET_H

static __always_inline void bitset_word_set(__u64 *w, __u32 id, bool on)
{
	__u64 bit = 1ULL << (id & 63);

	if (!w)
		return;
	if (on && !(*w & bit))
		__sync_fetch_and_add(w, bit);
	else if (!on && (*w & bit))
		__sync_fetch_and_add(w, -bit);
}

#endif
