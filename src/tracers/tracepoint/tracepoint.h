/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* btrace tracepoint: types shared by tracepoint.bpf.c and user space (through the
 * skeleton). A record is a task_hdr, then the tracepoint's fixed part (tp_raw_size bytes,
 * as in its format file), then one slot per field the program reads for user space
 * (struct str_hdr in abi.h and the bytes), at offsets user space computed. */
#ifndef BTRACE_TRACEPOINT_H
#define BTRACE_TRACEPOINT_H

#include "abi.h"

enum tp_limits {
	TP_RAW_MAX = 1024,   /* bytes of the fixed record copied at most */
	TP_MAX_SLOTS = 4,    /* fields read into slots at most */
};

/* How a slot's field is read. */
enum tp_slot_kind {
	TP_SLOT_STR_PTR = 0,   /* char *: a C string in user or kernel memory */
	TP_SLOT_DATA_LOC = 1,  /* __data_loc char[]: u32 (len << 16 | offset from record start) */
	TP_SLOT_REL_LOC = 2,   /* __rel_loc char[]: offset from the end of the field */
	TP_SLOT_BUF = 3,       /* a pointer with a length field beside it: that many bytes */
	TP_SLOT_ARGV = 4,      /* char **: a NULL-terminated list of C strings */
};

#endif
