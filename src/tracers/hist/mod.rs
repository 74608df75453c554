// SPDX-License-Identifier: Apache-2.0
//! Syscall latency: `btrace hist`, and the syscall tracer of the dashboard and exporter.

pub mod command;
pub mod metrics;
pub mod skel;
pub mod tracer;
