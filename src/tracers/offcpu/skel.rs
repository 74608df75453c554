// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the off-CPU profiler: its generated skeleton and the types it
//! shares with offcpu.bpf.c (offcpu.h).

crate::skel_leaf!(
    "offcpu",
    Offcpu = OffcpuKind(OffcpuSkelBuilder, OpenOffcpuSkel, OffcpuSkel)
);

// SAFETY: a plain C struct of integers, as generated from the object's BTF: every bit
// pattern is a valid value.
unsafe impl plain::Plain for types::offcpu_val {}
