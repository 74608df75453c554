// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Never loaded: compiled only so that the types every tracer shares with user space
 * (include/abi.h) reach a skeleton's BTF, from which src/model/abi.rs takes them. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "abi.h"
#include "net.h"
#include "func.h"
#include "stacks.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile enum btrace_limits abi_limits = 0;
const volatile enum loss_kind abi_loss_kind = 0;
const volatile enum scope_limits abi_scope_limits = 0;
const volatile struct hist abi_hist = {};
const volatile struct task_hdr abi_task_hdr = {};
const volatile struct str_hdr abi_str_hdr = {};
const volatile enum str_flags abi_str_flags = 0;
const volatile enum tcp_state_nr abi_tcp_state = 0;
const volatile enum tcp_family abi_tcp_family = 0;
const volatile struct func_event abi_func_event = {};
const volatile enum func_limits abi_func_limits = 0;
const volatile enum arg_read abi_arg_read = 0;
const volatile enum stack_limits abi_stack_limits = 0;
const volatile enum stack_loss abi_stack_loss = 0;
const volatile enum stack_table_counter abi_stack_table_counter = 0;
const volatile struct stack_key abi_stack_key = {};
const volatile struct stack_slot abi_stack_slot = {};
const volatile struct stack_proc_event abi_stack_proc_event = {};
const volatile struct mm_id abi_mm_id = {};
