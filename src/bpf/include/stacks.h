/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Stack walks, shared by every program that records stacks: the profilers (`profile`,
 * `offcpu`: stacks in the double-buffered tables of stack_tables.h, counted in a hash) and the event
 * tracers' `--stack` (both stacks copied into the event, struct stack_slot).
 *
 * The kernel walks the stacks: kernel frames from its unwinder, user frames by frame
 * pointers (code built without them ends the walk early: see README, Stacks). What a walk
 * could not deliver is counted per CPU in `stack_losses` (enum stack_loss), never dropped
 * silently; the sample or event itself is kept, with that stack marked lost.
 *
 * User space gets, with every user stack, what identifies the address space it was taken
 * in (struct mm_id): the maps it reads later are used only when they are that address
 * space's, so a process that exec'd since is never symbolized with the wrong maps. */
#ifndef BTRACE_STACKS_H
#define BTRACE_STACKS_H

#include "abi.h"
#include "losses.h"

enum stack_limits {
	STACK_MAX_DEPTH = 127,  /* frames kept of one stack (PERF_MAX_STACK_DEPTH) */
	/* Stack ids that are not ids (a stack id is >= 0; a failed walk's -errno is kept). */
	STACK_NONE = -1000,     /* not asked for (--kernel-stacks/--user-stacks), or none: a kernel thread
	                         * (or an exiting task past its address space) has no user
	                         * stack, a task interrupted in user mode no kernel stack */
};

/* What the walks could not deliver; one per-CPU counter each. */
enum stack_loss {
	STACK_LOSS_COLLISION = 0,  /* -EEXIST: the stack's bucket in a BPF_MAP_TYPE_STACK_TRACE
	                            * map held another stack (no chaining); the profilers' own
	                            * stack tables chain, and never collide */
	STACK_LOSS_FULL = 1,       /* -ENOMEM: the stack table had no free entry */
	STACK_LOSS_USER_FAULT = 2, /* -EFAULT: the user stack could not be walked at all */
	STACK_LOSS_OTHER = 3,      /* any other error of a walk */
	STACK_LOSS_KINDS = 4,
};

/* The address space a user stack was taken in: mm->start_stack (random per exec under
 * ASLR) and the inode of its executable. User space compares them with /proc/PID/stat's
 * startstack and /proc/PID/exe before trusting /proc/PID/maps. */
struct mm_id {
	__u64 start_stack;
	__u64 exe_ino;
};

/* Profilers (stack_procs.h): a process seen for the first time (or again after an exec). */
struct stack_proc_event {
	__u32 pid;     /* host tgid */
	__u32 ns_pid;  /* its id in btrace's pid namespace (0: the same, or outside it) */
	__u64 gen;     /* the generation its counts carry */
	struct mm_id mm;
};

/* What the profilers count by: who, and the two stacks (ids: the hash of the stack's
 * addresses, the key of its stack table in stack_tables.h). */
struct stack_key {
	__u32 pid;        /* host tgid */
	__u32 tid;        /* host tid */
	__u64 gen;        /* the process's generation (stack_procs.h), 0 when not known */
	__s64 kernel_id;  /* stack id (>= 0), or -errno (lost, counted), or STACK_NONE */
	__s64 user_id;
	char comm[COMM_LEN];
};

/* The per-CPU counters of the profilers' double-buffered tables (stack_tables.h). */
enum stack_table_counter {
	TABLE_SEEN = 0,          /* samples (blocks) the programs saw: kept or lost */
	TABLE_SEEN_VALUE = 1,    /* their value (offcpu: nanoseconds; profile: samples) */
	TABLE_COUNTS_MADE0 = 2,  /* count entries made in buffer 0 since its last drain */
	TABLE_COUNTS_MADE1 = 3,
	TABLE_STACKS_MADE0 = 4,  /* stack entries made in buffer 0 since its last drain */
	TABLE_STACKS_MADE1 = 5,
	TABLE_COUNTERS = 6,
};

/* Both stacks of one event (--stack), innermost frame first. */
struct stack_slot {
	__s32 kernel_len;  /* bytes of kernel[] used, or -errno, or STACK_NONE */
	__s32 user_len;    /* bytes of user[] used, or -errno, or STACK_NONE */
	struct mm_id mm;
	__u64 kernel[STACK_MAX_DEPTH];
	__u64 user[STACK_MAX_DEPTH];
};

DECLARE_COUNTERS(stack_losses, STACK_LOSS_KINDS, count_stack_loss)

#define STACK_PF_KTHREAD 0x00200000 /* PF_KTHREAD: a kernel thread, no user stack */
#define STACK_EFAULT 14
#define STACK_EEXIST 17
#define STACK_ENOMEM 12

/* Whether the current task has no user address space: a kernel thread, or a task that
 * has left its own while exiting. */
static __always_inline bool current_no_user(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();

	return (BPF_CORE_READ(t, flags) & STACK_PF_KTHREAD) || !BPF_CORE_READ(t, mm);
}

static __always_inline void current_mm_id(struct mm_id *id)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();

	id->start_stack = BPF_CORE_READ(t, mm, start_stack);
	id->exe_ino = BPF_CORE_READ(t, mm, exe_file, f_inode, i_ino);
}

/* Counts a failed walk: `user` says which side. A kernel walk that finds nothing (the
 * task was in user mode) is no loss: there was no kernel stack. */
static __always_inline __s32 stack_failed(long err, bool user)
{
	if (err == -STACK_EFAULT && !user)
		return STACK_NONE;
	if (err == -STACK_EEXIST)
		count_stack_loss(STACK_LOSS_COLLISION);
	else if (err == -STACK_ENOMEM)
		count_stack_loss(STACK_LOSS_FULL);
	else if (err == -STACK_EFAULT)
		count_stack_loss(STACK_LOSS_USER_FAULT);
	else
		count_stack_loss(STACK_LOSS_OTHER);
	return err;
}

/* Both stacks of the current task into `s` (event --stack); the kernel stack only when
 * `kernel` (STACK_NONE otherwise: a probe that fires in user mode, a uprobe, has none). */
static __always_inline void read_stacks(void *ctx, struct stack_slot *s, bool kernel)
{
	long n;

	if (kernel) {
		n = bpf_get_stack(ctx, s->kernel, sizeof(s->kernel), 0);
		s->kernel_len = n < 0 ? stack_failed(n, false) : n;
	} else {
		s->kernel_len = STACK_NONE;
	}
	s->mm.start_stack = 0;
	s->mm.exe_ino = 0;
	if (current_no_user()) {
		s->user_len = STACK_NONE;
		return;
	}
	n = bpf_get_stack(ctx, s->user, sizeof(s->user), BPF_F_USER_STACK);
	s->user_len = n < 0 ? stack_failed(n, true) : n;
	current_mm_id(&s->mm);
}

#endif
