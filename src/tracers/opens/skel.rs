// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the open tracer: its generated skeleton and the kernel ABI it
//! shares with opens.bpf.c (opens.h).

crate::skel_leaf!(
    "opens",
    OpenObj = OpensKind(OpensSkelBuilder, OpenOpensSkel, OpensSkel)
);

/// Bytes of `--path-prefix` compared at most.
pub const PREFIX_MAX: usize = types::open_limits::OPEN_PREFIX_MAX.0 as usize;

// SAFETY: a plain C struct of integers and chars, as generated from the object's BTF:
// every bit pattern is a valid value.
unsafe impl plain::Plain for types::open_event {}
