//! Kernel functions: `btrace kprobe`.

pub mod command;
pub mod skel;
pub mod tracer;
