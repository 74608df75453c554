/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* btrace exec: types shared by exec.bpf.c and user space (through the skeleton). */
#ifndef BTRACE_EXEC_H
#define BTRACE_EXEC_H

#include "abi.h"

enum exec_limits {
	EXEC_PATH_SIZE = 4096,           /* bytes kept of the filename (PATH_MAX) */
	EXEC_ARG_SIZE = STR_SIZE_DEFAULT, /* bytes kept of one argument */
	EXEC_MAX_INFLIGHT = 512,         /* default bound of execs in flight at once */
};

enum exec_call {
	EXEC_CALL_EXECVE = 0,
	EXEC_CALL_EXECVEAT = 1,
};

/* String slots as strings.h fills them: the header, then room for the size plus two
 * bytes (one more than kept, and the NUL), rounded up to 8. */
struct exec_path_slot {
	struct str_hdr h;
	char data[EXEC_PATH_SIZE + 8];
};

struct exec_arg_slot {
	struct str_hdr h;
	char data[EXEC_ARG_SIZE + 8];
};

/* A list slot: `h.len` items read (at most ARGV_MAX; STR_TRUNCATED when there were more). */
struct exec_argv {
	struct str_hdr h;
	struct exec_arg_slot items[ARGV_MAX];
};

/* One exec call: filled at entry (filename, arguments: the caller's memory is gone once
 * the exec succeeds), completed at exit, sent up to its last argument. */
struct exec_event {
	struct task_hdr hdr;  /* at exit: the new program's name after a successful exec */
	__s64 ret;            /* 0, or -errno */
	__u32 ppid;           /* the parent's thread group id (host), at exit */
	__u32 call;           /* enum exec_call */
	__s32 dfd;            /* execveat's directory descriptor */
	__u32 at_flags;       /* execveat's flags */
	__u64 fname_ptr;      /* the caller's pointers, to read again what faulted at entry */
	__u64 argv_ptr;
	struct exec_path_slot path;
	struct exec_argv argv;
};

#endif
