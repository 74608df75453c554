// SPDX-License-Identifier: Apache-2.0
//! Block I/O latency: `btrace biolatency`.

pub mod command;
pub mod skel;
pub mod tracer;
