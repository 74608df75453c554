/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The pid-namespace iterator's record (pidns.bpf.c), shared with user space. */
#ifndef BTRACE_PIDNS_H
#define BTRACE_PIDNS_H

enum pidns_limits {
	PIDNS_MAX_LEVELS = 32, /* MAX_PID_NS_LEVEL */
};

struct pidns_entry {
	__u32 host_pid;
	__u32 host_tgid;
	__u32 ns_pid;
	__u32 ns_tgid;
};

#endif
