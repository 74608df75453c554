// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the kprobe tracer: its generated skeleton and the kernel ABI it
//! shares with kprobe.bpf.c (kprobe.h).

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/kprobe.skel.rs"));
}
pub use generated::*;

crate::skel_kind!(KprobeKind, KprobeSkelBuilder, OpenKprobeSkel, KprobeSkel);

/// A loaded kprobe object with its storage.
pub type Kprobe = crate::core::skel::Loaded<KprobeKind>;
