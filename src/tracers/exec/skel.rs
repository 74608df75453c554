// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the exec tracer: its generated skeleton and the kernel ABI it
//! shares with exec.bpf.c (exec.h).

crate::skel_leaf!(
    "exec",
    ExecObj = ExecKind(ExecSkelBuilder, OpenExecSkel, ExecSkel)
);

/// Bytes kept of the filename and of one argument.
pub const PATH_SIZE: usize = types::exec_limits::EXEC_PATH_SIZE.0 as usize;
pub const ARG_SIZE: usize = types::exec_limits::EXEC_ARG_SIZE.0 as usize;
/// Default bound of the execs in flight at once.
pub const MAX_INFLIGHT: u32 = types::exec_limits::EXEC_MAX_INFLIGHT.0;

// SAFETY: a plain C struct of integers and chars, as generated from the object's BTF:
// every bit pattern is a valid value.
unsafe impl plain::Plain for types::exec_event {}
