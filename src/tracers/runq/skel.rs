// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the run-queue tracer: its generated skeleton.

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/runq.skel.rs"));
}
pub use generated::*;

crate::skel_kind!(RunqKind, RunqSkelBuilder, OpenRunqSkel, RunqSkel);

/// A loaded runq object with its storage.
pub type Runq = crate::core::skel::Loaded<RunqKind>;

/// Processes or cgroups the breakdown keeps apart.
pub const MAX_KEYS: u32 = types::runq_limits::RUNQ_MAX_KEYS.0;

// SAFETY: plain C structs of integers, as generated from the object's BTF: every bit
// pattern is a valid value.
unsafe impl plain::Plain for types::bss {}
// SAFETY: as above.
unsafe impl plain::Plain for types::runq_stat {}
// SAFETY: as above.
unsafe impl plain::Plain for types::runq_comm {}
