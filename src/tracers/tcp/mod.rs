// SPDX-License-Identifier: Apache-2.0
//! TCP connection lifecycle: `btrace tcp`, and the tcp tracer of the dashboard.

pub mod command;
pub mod event;
pub mod filter;
pub mod metrics;
pub mod skel;
pub mod tracer;
