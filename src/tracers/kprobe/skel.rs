// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the kprobe tracer: its generated skeleton and the kernel ABI it
//! shares with kprobe.bpf.c (kprobe.h).

crate::skel_leaf!(
    "kprobe",
    Kprobe = KprobeKind(KprobeSkelBuilder, OpenKprobeSkel, KprobeSkel)
);
