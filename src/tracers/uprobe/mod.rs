// SPDX-License-Identifier: Apache-2.0
//! User-space functions and USDT probes: `btrace uprobe`, `btrace usdt`.

pub mod command;
pub mod skel;
pub mod tracer;
pub mod usdt;
