// SPDX-License-Identifier: Apache-2.0
//! What the stack-recording kernel programs leave for user space (src/bpf/include/
//! stacks.h and stack_procs.h), read and symbolized: stack ids and their addresses, the
//! stack losses, the processes seen (their maps read while they live), and the stacks of
//! streamed events (`--stack`).

mod events;
mod procs;
mod report;

pub use events::{EventStackArgs, EventStacks};
pub use procs::{capture, decode_proc_event, read_gens, ProcSeen, ProcStacks};
pub use report::{open_svg, report, Measure, StackOutArgs, DEFAULT_MAX_STACKS, MAX_STACKS_LIMIT};

use anyhow::Result;
use libbpf_rs::MapCore;
use serde_json::{json, Value};

use crate::core::percpu;
use crate::model::abi::types::stack_loss;
use crate::model::abi::COMM_LEN;
use crate::model::stacks::Frame;
use crate::resolve::symbols::Symbolizer;

/// Frames kept of one stack.
pub const STACK_MAX_DEPTH: usize =
    crate::model::abi::types::stack_limits::STACK_MAX_DEPTH.0 as usize;
/// A stack id that says "no stack" (not asked for, or none).
pub const STACK_NONE: i32 = crate::model::abi::types::stack_limits::STACK_NONE.0 as i32;

const _: () = assert!(COMM_LEN == 16);

/// What the stack walks could not deliver, since load (and, found in user space, user
/// stacks that end early).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackLosses {
    /// -EEXIST: the stack's bucket in a BPF_MAP_TYPE_STACK_TRACE map held another stack
    /// (the profilers' own stack tables chain and never collide).
    pub collision: u64,
    /// -ENOMEM: the stack table had no free entry (profilers: more distinct stacks than
    /// --max-stacks between two drains).
    pub map_full: u64,
    /// -EFAULT: a user stack could not be walked at all.
    pub user_fault: u64,
    /// Any other error of a walk.
    pub other: u64,
    /// Samples (or blocks, or events) whose user stack ends before a thread's entry
    /// point: cut short by code without frame pointers.
    pub user_truncated: u64,
    /// User frames left unknown because their file could not be opened (out of
    /// descriptors, or gone with its process).
    pub unreadable: u64,
}

impl StackLosses {
    /// Reads a program's `stack_losses` map.
    pub fn read(map: &dyn MapCore) -> Result<StackLosses> {
        let sum = |k: stack_loss| percpu::values::<u64>(map, k.0).map(|v| v.iter().sum::<u64>());
        Ok(StackLosses {
            collision: sum(stack_loss::STACK_LOSS_COLLISION)?,
            map_full: sum(stack_loss::STACK_LOSS_FULL)?,
            user_fault: sum(stack_loss::STACK_LOSS_USER_FAULT)?,
            other: sum(stack_loss::STACK_LOSS_OTHER)?,
            user_truncated: 0,
            unreadable: 0,
        })
    }

    pub fn json(&self) -> Value {
        json!({
            "collision": self.collision,
            "map_full": self.map_full,
            "user_fault": self.user_fault,
            "other": self.other,
            "user_truncated": self.user_truncated,
            "unreadable_file_frames": self.unreadable,
        })
    }

    pub fn text(&self) -> String {
        let unreadable = match self.unreadable {
            0 => String::new(),
            n => format!(" {n} user frames unknown: their file could not be opened."),
        };
        format!(
            "Stacks lost: {} (stack map collision), {} (stack table full), {} user stacks not walkable, {} other; {} user stacks cut short (no frame pointers).{unreadable}",
            self.collision, self.map_full, self.user_fault, self.other, self.user_truncated
        )
    }
}

/// Why a walk failed, from the -errno the kernel kept in place of a stack id.
pub fn lost_reason(err: i32) -> &'static str {
    match -err {
        libc::EEXIST => "stack map collision",
        libc::ENOMEM => "stack table full",
        libc::EFAULT => "not walkable",
        _ => "walk failed",
    }
}

/// The pid to read /proc with for host pid `pid`: in a pid namespace of btrace's own,
/// the id there (None for a task outside it).
pub fn proc_pid(pid: u32, ns_pid: u32) -> Option<u32> {
    if crate::core::pidns::in_child_ns() {
        (ns_pid != 0).then_some(ns_pid)
    } else {
        Some(pid)
    }
}

/// Kernel frames the tracing machinery adds on top of a stack taken from a BPF program
/// run by a tracepoint or a trampoline (the program, the helper, the tracepoint's
/// dispatch): not what the traced task was doing.
fn machinery(f: &Frame) -> bool {
    const PREFIXES: &[&str] = &[
        "bpf_",
        "__bpf_",
        "___bpf_",
        "__traceiter_",
        "trace_call_bpf",
        "perf_trace_",
        "__perf_",
        "perf_syscall_",
        "perf_callchain",
        "get_perf_callchain",
        "trace_event_",
    ];
    match &f.name {
        Some(n) => PREFIXES.iter().any(|p| n.starts_with(p)),
        // Unnamed code at the top of such a stack is JIT'd BPF code (programs and
        // trampolines are named only where bpf_jit_kallsyms is on).
        None => true,
    }
}

/// A kernel stack's frames, with the tracing machinery on top removed when the stack was
/// taken from a tracepoint or trampoline program (`from_tracing`).
pub fn kernel_frames(sym: &mut Symbolizer, addrs: &[u64], from_tracing: bool) -> Vec<Frame> {
    let mut frames = sym.kernel(addrs);
    if from_tracing {
        let skip = frames.iter().take_while(|f| machinery(f)).count();
        if skip < frames.len() {
            frames.drain(..skip);
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        assert_eq!(lost_reason(-libc::EEXIST), "stack map collision");
        assert_eq!(lost_reason(-libc::EFAULT), "not walkable");
        assert_eq!(lost_reason(-1), "walk failed");
        const { assert!(STACK_NONE < 0) };
        assert_eq!(STACK_MAX_DEPTH, 127);
    }

    #[test]
    fn machinery_on_top_only() {
        let f = |n: &str| Frame {
            name: Some(n.into()),
            inlined: false,
            module: None,
            offset: 0,
            file: None,
            line: None,
            addr: 1,
        };
        assert!(machinery(&f("bpf_trace_run4")));
        assert!(machinery(&f("__traceiter_sched_switch")));
        assert!(!machinery(&f("__schedule")));
        assert!(!machinery(&f("do_sys_openat2")));
    }
}
