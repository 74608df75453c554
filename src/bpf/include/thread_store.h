/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-thread stores: what an entry probe keeps for its exit probe, in one of two forms.
 *
 *  - task storage (BPF_MAP_TYPE_TASK_STORAGE, tracing programs 5.11+): unbounded, freed
 *    with the task, about 30 ns a lookup here;
 *  - a bounded hash keyed by thread id (every kernel): user space sets its size; a
 *    thread's entry is made once, rewritten in place, and removed when the thread ends
 *    (the NAME_reap_* programs on sched_process_exit), since an update and a delete per
 *    event would cost about twice as much.
 *
 * DECLARE_THREAD_STORE(NAME, TYPE) declares both maps (NAME_task, NAME_hash) and the
 * helpers below; user space keeps only one: it turns the other's autocreate off or
 * shrinks it to one entry, and enables the reap program of the hook family in use. */
#ifndef BTRACE_THREAD_STORE_H
#define BTRACE_THREAD_STORE_H

#define DECLARE_THREAD_STORE(NAME, TYPE)                                          \
	struct {                                                                  \
		__uint(type, BPF_MAP_TYPE_TASK_STORAGE);                          \
		__uint(map_flags, BPF_F_NO_PREALLOC);                             \
		__type(key, int);                                                 \
		__type(value, TYPE);                                              \
	} NAME##_task SEC(".maps");                                               \
                                                                                  \
	struct {                                                                  \
		__uint(type, BPF_MAP_TYPE_HASH);                                  \
		__uint(max_entries, 16384); /* user space sets the bound */       \
		__type(key, __u32);                                               \
		__type(value, TYPE);                                              \
	} NAME##_hash SEC(".maps");                                               \
                                                                                  \
	/* The current thread's entry in task storage, made if `create`. */       \
	static __always_inline TYPE *NAME##_task_get(bool create)                 \
	{                                                                         \
		return bpf_task_storage_get(&NAME##_task, bpf_get_current_task_btf(), \
					    0,                                    \
					    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0); \
	}                                                                         \
                                                                                  \
	/* The current thread's entry in the hash, NULL when it has none. */      \
	static __always_inline TYPE *NAME##_hash_get(void)                        \
	{                                                                         \
		__u32 tid = (__u32)bpf_get_current_pid_tgid();                    \
                                                                                  \
		return bpf_map_lookup_elem(&NAME##_hash, &tid);                   \
	}                                                                         \
                                                                                  \
	/* Makes the current thread's entry from `init`; false when full. */      \
	static __always_inline bool NAME##_hash_add(const TYPE *init)             \
	{                                                                         \
		__u32 tid = (__u32)bpf_get_current_pid_tgid();                    \
                                                                                  \
		return bpf_map_update_elem(&NAME##_hash, &tid, init, BPF_NOEXIST) == 0; \
	}                                                                         \
                                                                                  \
	/* A thread that ends frees its entry (a no-op for threads that never     \
	 * stored one). Runs in the exiting thread, also when it died inside the  \
	 * traced call. */                                                        \
	static __always_inline void NAME##_hash_reap(void)                        \
	{                                                                         \
		__u32 tid = (__u32)bpf_get_current_pid_tgid();                    \
                                                                                  \
		bpf_map_delete_elem(&NAME##_hash, &tid);                          \
	}                                                                         \
                                                                                  \
	SEC("raw_tp/sched_process_exit")                                          \
	int BPF_PROG(NAME##_reap_raw)                                             \
	{                                                                         \
		NAME##_hash_reap();                                               \
		return 0;                                                         \
	}                                                                         \
                                                                                  \
	SEC("tracepoint/sched/sched_process_exit")                                \
	int NAME##_reap_tp(void *ctx)                                             \
	{                                                                         \
		NAME##_hash_reap();                                               \
		return 0;                                                         \
	}

#endif
