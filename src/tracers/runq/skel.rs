// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the run-queue tracer: its generated skeleton.

crate::skel_leaf!(
    "runq",
    Runq = RunqKind(RunqSkelBuilder, OpenRunqSkel, RunqSkel)
);

/// Processes or cgroups the breakdown keeps apart.
pub const MAX_KEYS: u32 = types::runq_limits::RUNQ_MAX_KEYS.0;

// SAFETY: plain C structs of integers, as generated from the object's BTF: every bit
// pattern is a valid value.
unsafe impl plain::Plain for types::bss {}
// SAFETY: as above.
unsafe impl plain::Plain for types::runq_stat {}
// SAFETY: as above.
unsafe impl plain::Plain for types::runq_comm {}
