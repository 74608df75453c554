/* SPDX-License-Identifier: GPL-2.0 */
/* btrace tracepoint: types shared by tracepoint.bpf.c and user space (through the
 * skeleton). A record is a task_hdr, then the tracepoint's fixed part (tp_raw_size bytes,
 * as in its format file), then tp_n_strs strings of STR_LEN bytes each. */
#ifndef BTRACE_TRACEPOINT_H
#define BTRACE_TRACEPOINT_H

#include "abi.h"

enum tp_limits {
	TP_RAW_MAX = 1024,   /* bytes of the fixed record copied at most */
	TP_MAX_STRS = 4,     /* string fields read at most */
};

enum tp_str_kind {
	TP_STR_PTR = 0,       /* a char * field: the string is read from user or kernel memory */
	TP_STR_DATA_LOC = 1,  /* __data_loc char[]: u32 (len << 16 | offset from record start) */
	TP_STR_REL_LOC = 2,   /* __rel_loc char[]: offset from the end of the field */
};

#endif
