// SPDX-License-Identifier: Apache-2.0
//! Kernel functions: `btrace kprobe`.

pub mod command;
pub mod count;
pub mod skel;
pub mod tracer;
