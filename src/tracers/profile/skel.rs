// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the CPU profiler: its generated skeleton (shared types: struct
//! stack_key and the process events come from src/core/abi.rs).

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/profile.skel.rs"));
}
pub use generated::*;

crate::skel_kind!(
    ProfileKind,
    ProfileSkelBuilder,
    OpenProfileSkel,
    ProfileSkel
);

/// A loaded profile object with its storage.
pub type Profile = crate::core::skel::Loaded<ProfileKind>;
