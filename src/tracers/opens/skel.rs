// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the open tracer: its generated skeleton and the kernel ABI it
//! shares with opens.bpf.c (opens.h).

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/opens.skel.rs"));
}
pub use generated::*;

crate::skel_kind!(OpensKind, OpensSkelBuilder, OpenOpensSkel, OpensSkel);

/// A loaded open object with its storage.
pub type OpenObj = crate::core::skel::Loaded<OpensKind>;

/// Bytes of `--path-prefix` compared at most.
pub const PREFIX_MAX: usize = types::open_limits::OPEN_PREFIX_MAX.0 as usize;

// SAFETY: a plain C struct of integers and chars, as generated from the object's BTF:
// every bit pattern is a valid value.
unsafe impl plain::Plain for types::open_event {}
