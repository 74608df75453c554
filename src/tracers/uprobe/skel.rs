// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the uprobe tracer: its generated skeleton (uprobe.bpf.c, with the
//! shared function-tracer side of src/bpf/include/func_probe.h).

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/uprobe.skel.rs"));
}
pub use generated::*;

crate::skel_kind!(UprobeKind, UprobeSkelBuilder, OpenUprobeSkel, UprobeSkel);

/// A loaded uprobe object with its storage.
pub type Uprobe = crate::core::skel::Loaded<UprobeKind>;
