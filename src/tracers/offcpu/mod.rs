// SPDX-License-Identifier: Apache-2.0
//! Time blocked, by stack: `btrace offcpu`.

pub mod command;
pub mod skel;
pub mod tracer;
