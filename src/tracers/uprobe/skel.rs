// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the uprobe tracer: its generated skeleton (uprobe.bpf.c, with the
//! shared function-tracer side of src/bpf/include/func_probe.h).

crate::skel_leaf!(
    "uprobe",
    Uprobe = UprobeKind(UprobeSkelBuilder, OpenUprobeSkel, UprobeSkel)
);
