// SPDX-License-Identifier: Apache-2.0
//! Any classic tracepoint as an event stream: `btrace tracepoint`.

pub mod command;
pub mod skel;
pub mod tracer;
