// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the CPU profiler: its generated skeleton (shared types: struct
//! stack_key and the process events come from src/model/abi.rs).

crate::skel_leaf!(
    "profile",
    Profile = ProfileKind(ProfileSkelBuilder, OpenProfileSkel, ProfileSkel)
);
