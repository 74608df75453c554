// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the tracepoint tracer: its generated skeleton and the kernel ABI it
//! shares with tracepoint.bpf.c (tracepoint.h).

crate::skel_leaf!(
    "tracepoint",
    Tp = TracepointKind(TracepointSkelBuilder, OpenTracepointSkel, TracepointSkel)
);

/// Bytes of a record's fixed part copied at most.
pub const TP_RAW_MAX: usize = types::tp_limits::TP_RAW_MAX.0 as usize;
/// Fields read into slots at most.
pub const TP_MAX_SLOTS: usize = types::tp_limits::TP_MAX_SLOTS.0 as usize;
