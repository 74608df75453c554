// SPDX-License-Identifier: Apache-2.0
//! The types and constants every tracer shares with user space (src/bpf/include/abi.h),
//! taken from the BTF of a skeleton compiled for that purpose (abi.bpf.c), never copied.
//! A tracer's own types come from its own skeleton.
//! It sits in the model layer, the lowest: what the kernel's numbers are is read by every
//! layer above (histograms and TCP states here, syscall tables in resolve, core, tracers).

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/abi.skel.rs"));
}
pub use skel::types;

/// Log2 histogram buckets (bucket 0 = [0,1) us, the last one open-ended).
pub const HIST_BUCKETS: usize = types::btrace_limits::HIST_BUCKETS.0 as usize;
/// Syscall numbers the per-syscall arrays index.
pub const MAX_SYSCALLS: u32 = types::btrace_limits::MAX_SYSCALLS.0;
/// The per-syscall slot that counts syscalls numbered outside the table.
pub const SYSCALL_OTHER: u32 = types::btrace_limits::SYSCALL_OTHER.0;
/// A task's name with its NUL (TASK_COMM_LEN).
pub const COMM_LEN: usize = types::btrace_limits::COMM_LEN.0 as usize;
/// Bytes kept of a string or buffer by default, and the range `--string-size` accepts.
pub const STR_SIZE_DEFAULT: usize = types::btrace_limits::STR_SIZE_DEFAULT.0 as usize;
pub const STR_SIZE_MIN: usize = types::btrace_limits::STR_SIZE_MIN.0 as usize;
pub const STR_SIZE_MAX: usize = types::btrace_limits::STR_SIZE_MAX.0 as usize;
/// Items of a char ** list read at most.
pub const ARGV_MAX: usize = types::btrace_limits::ARGV_MAX.0 as usize;
/// String slot flags.
pub const STR_TRUNCATED: u32 = types::str_flags::STR_TRUNCATED.0;
pub const STR_FAULT: u32 = types::str_flags::STR_FAULT.0;
pub const STR_NOT_READ: u32 = types::str_flags::STR_NOT_READ.0;

// SAFETY: plain C structs of integers and chars, as generated from the object's BTF: every
// bit pattern is a valid value.
unsafe impl plain::Plain for types::hist {}
// SAFETY: as above.
unsafe impl plain::Plain for types::task_hdr {}
// SAFETY: as above.
unsafe impl plain::Plain for types::str_hdr {}
// SAFETY: as above.
unsafe impl plain::Plain for types::func_event {}
// SAFETY: as above.
unsafe impl plain::Plain for types::stack_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::stack_slot {}
// SAFETY: as above.
unsafe impl plain::Plain for types::stack_proc_event {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_header() {
        assert_eq!(types::hist::default().buckets.len(), HIST_BUCKETS);
        assert_eq!(std::mem::size_of::<types::task_hdr>(), 32 + COMM_LEN);
        assert_eq!(types::loss_kind::LOSS_RINGBUF.0, 2);
    }
}
