/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-thread stores: what one hook keeps for a thread until another hook finds it (an
 * entry probe for its exit probe, a wakeup for the switch that runs the task), in one of
 * two forms.
 *
 *  - task storage (BPF_MAP_TYPE_TASK_STORAGE, tracing programs 5.11+): unbounded, freed
 *    with the task, about 30 ns a lookup here;
 *  - a bounded hash keyed by thread id (every kernel): user space sets its size.
 *
 * DECLARE_TASK_STORE(NAME, TYPE) declares both maps (NAME_task, NAME_hash) and helpers
 * that take the task (or its thread id): for hooks that store for a task other than the
 * current one (sched_switch's prev and next, sched_wakeup's p). A hash entry is then made
 * or replaced with NAME_hash_put and removed by the hook that uses it (NAME_hash_drop).
 *
 * DECLARE_THREAD_STORE(NAME, TYPE) adds helpers for the current thread, and the way
 * entry/exit pairs keep a hash entry: made once, rewritten in place, and removed when the
 * thread ends (the NAME_reap_* programs on sched_process_exit), since an update and a
 * delete per event would cost about twice as much.
 *
 * User space keeps only one of the two maps: it turns the other's autocreate off or
 * shrinks it to one entry (and, for a thread store, enables the reap program of the hook
 * family in use). */
#ifndef BTRACE_THREAD_STORE_H
#define BTRACE_THREAD_STORE_H

/* The thread id of task `t` (what bpf_get_current_pid_tgid()'s low half says of the
 * current one). */
static __always_inline __u32 task_tid(struct task_struct *t)
{
	return BPF_CORE_READ(t, pid);
}

#define DECLARE_TASK_STORE(NAME, TYPE)                                            \
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
	/* Task `t`'s entry in task storage (a BTF pointer), made if `create`. */ \
	static __always_inline TYPE *NAME##_task_of(struct task_struct *t, bool create) \
	{                                                                         \
		return bpf_task_storage_get(&NAME##_task, t, 0,                   \
					    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0); \
	}                                                                         \
                                                                                  \
	/* Thread `tid`'s entry in the hash, NULL when it has none. */            \
	static __always_inline TYPE *NAME##_hash_of(__u32 tid)                    \
	{                                                                         \
		return bpf_map_lookup_elem(&NAME##_hash, &tid);                   \
	}                                                                         \
                                                                                  \
	/* Makes or replaces thread `tid`'s entry; false when the hash is full. */ \
	static __always_inline bool NAME##_hash_put(__u32 tid, const TYPE *v)     \
	{                                                                         \
		return bpf_map_update_elem(&NAME##_hash, &tid, v, BPF_ANY) == 0;  \
	}                                                                         \
                                                                                  \
	/* Removes thread `tid`'s entry (a no-op when it has none). */            \
	static __always_inline void NAME##_hash_drop(__u32 tid)                   \
	{                                                                         \
		bpf_map_delete_elem(&NAME##_hash, &tid);                          \
	}

#define DECLARE_THREAD_STORE(NAME, TYPE)                                          \
	DECLARE_TASK_STORE(NAME, TYPE)                                            \
                                                                                  \
	/* The current thread's entry in task storage, made if `create`. */       \
	static __always_inline TYPE *NAME##_task_get(bool create)                 \
	{                                                                         \
		return NAME##_task_of(bpf_get_current_task_btf(), create);        \
	}                                                                         \
                                                                                  \
	/* The current thread's entry in the hash, NULL when it has none. */      \
	static __always_inline TYPE *NAME##_hash_get(void)                        \
	{                                                                         \
		return NAME##_hash_of((__u32)bpf_get_current_pid_tgid());         \
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
		NAME##_hash_drop((__u32)bpf_get_current_pid_tgid());              \
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
