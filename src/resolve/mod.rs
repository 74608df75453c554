//! Turning names into what the kernel needs and numbers into names: kernel function
//! prototypes from BTF, tracepoint formats from tracefs, syscall names.

pub mod btf;
pub mod syscalls;
pub mod tracefs_format;
