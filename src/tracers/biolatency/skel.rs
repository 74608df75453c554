// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the biolatency tracer: its generated skeleton and the kernel ABI it
//! shares with biolatency.bpf.c (biolatency.h).

crate::skel_leaf!(
    "biolatency",
    BioObj = BioKind(BiolatencySkelBuilder, OpenBiolatencySkel, BiolatencySkel)
);

/// Default bound of the requests in flight at once.
pub const MAX_INFLIGHT: u32 = types::bio_limits::BIO_MAX_INFLIGHT.0;

// SAFETY: plain C structs of integers and chars, as generated from the object's BTF:
// every bit pattern is a valid value.
unsafe impl plain::Plain for types::bio_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::bio_stat {}
// SAFETY: as above.
unsafe impl plain::Plain for types::bio_disk {}
