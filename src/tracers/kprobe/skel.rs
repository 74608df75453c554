// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the kprobe tracer: its generated skeleton and the kernel ABI it
//! shares with kprobe.bpf.c (kprobe.h).

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/kprobe.skel.rs"));
}
pub use generated::*;

crate::skel_kind!(KprobeKind, KprobeSkel);

/// A loaded kprobe object with its storage.
pub type Kprobe = crate::core::skel::Loaded<KprobeKind>;

/// Arguments read at most.
pub const FUNC_MAX_ARGS: usize = types::func_limits::FUNC_MAX_ARGS.0 as usize;
/// Arguments read into string slots (strings, buffers) at most.
pub const FUNC_MAX_SLOTS: usize = types::func_limits::FUNC_MAX_SLOTS.0 as usize;

// SAFETY: a plain C struct of integers and chars, as generated from the object's BTF:
// every bit pattern is a valid value.
unsafe impl plain::Plain for types::func_event {}
