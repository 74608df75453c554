// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the off-CPU profiler: its generated skeleton and the types it
//! shares with offcpu.bpf.c (offcpu.h).

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/offcpu.skel.rs"));
}
pub use generated::*;

crate::skel_kind!(OffcpuKind, OffcpuSkelBuilder, OpenOffcpuSkel, OffcpuSkel);

/// A loaded offcpu object with its storage.
pub type Offcpu = crate::core::skel::Loaded<OffcpuKind>;

// SAFETY: a plain C struct of integers, as generated from the object's BTF: every bit
// pattern is a valid value.
unsafe impl plain::Plain for types::offcpu_val {}
