// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the tracepoint tracer: its generated skeleton and the kernel ABI it
//! shares with tracepoint.bpf.c (tracepoint.h).

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/tracepoint.skel.rs"));
}
pub use generated::*;

crate::skel_kind!(
    TracepointKind,
    TracepointSkelBuilder,
    OpenTracepointSkel,
    TracepointSkel
);

/// A loaded tracepoint object with its storage.
pub type Tp = crate::core::skel::Loaded<TracepointKind>;

/// Bytes of a record's fixed part copied at most.
pub const TP_RAW_MAX: usize = types::tp_limits::TP_RAW_MAX.0 as usize;
/// Fields read into slots at most.
pub const TP_MAX_SLOTS: usize = types::tp_limits::TP_MAX_SLOTS.0 as usize;
