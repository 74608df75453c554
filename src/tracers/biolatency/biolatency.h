/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* btrace biolatency: types shared by biolatency.bpf.c and user space (through the
 * skeleton). */
#ifndef BTRACE_BIOLATENCY_H
#define BTRACE_BIOLATENCY_H

#include "abi.h"

enum bio_limits {
	BIO_MAX_KEYS = 1024,       /* (disk, operation) pairs kept apart; more go to "other" */
	BIO_MAX_INFLIGHT = 16384,  /* default bound of requests in flight at once */
	BIO_DISK_NAME_LEN = 32,    /* DISK_NAME_LEN */
	BIO_OP_MASK = 0xff,        /* REQ_OP_MASK: the operation in request.cmd_flags */
};

/* One histogram's key: the disk (major << 20 | minor, 0 without --per-disk) and the
 * operation (enum req_op: read 0, write 1, flush 2, discard 3, ...). */
struct bio_key {
	__u32 dev;
	__u32 op;
};

/* What the kernel keeps per key (per CPU). */
struct bio_stat {
	struct hist lat;    /* issue to completion, log2 us */
	struct hist queue;  /* insert to issue, log2 us (-Q; requests that were inserted) */
	struct hist size;   /* request size, log2 bytes */
	__u64 errors;       /* completions with an error status */
};

/* A request between its insert/issue and its completion. */
struct bio_start {
	__u64 insert_ns;
	__u64 issue_ns;
	__u32 bytes;        /* its size at issue */
	__u32 skip;         /* out of scope: dropped at completion without a count */
};

struct bio_disk {
	char name[BIO_DISK_NAME_LEN];
};

#endif
