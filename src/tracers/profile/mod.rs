// SPDX-License-Identifier: Apache-2.0
//! CPU profiles by stack: `btrace profile`.

pub mod command;
pub mod skel;
pub mod tracer;
