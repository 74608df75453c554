// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the hist tracer: its generated skeleton and the kernel ABI it
//! shares with hist.bpf.c (hist.h).

crate::skel_leaf!(
    "hist",
    Hist = HistKind(HistSkelBuilder, OpenHistSkel, HistSkel)
);

/// Distinct processes the dashboard's process list holds at once.
pub const MAX_PROCS: u32 = types::hist_limits::MAX_PROCS.0;
/// Default bound of hist --by's (key, syscall) pairs.
pub const BY_MAX_KEYS: u32 = types::hist_limits::BY_MAX_KEYS.0;

// SAFETY: plain C structs of integers and chars, as generated from the object's BTF: every
// bit pattern is a valid value.
unsafe impl plain::Plain for types::proc_comm {}
// SAFETY: as above.
unsafe impl plain::Plain for types::bss {}
// SAFETY: as above.
unsafe impl plain::Plain for types::by_key {}
