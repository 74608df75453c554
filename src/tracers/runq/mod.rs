// SPDX-License-Identifier: Apache-2.0
//! Run-queue latency: `btrace runqlat`, and the dashboard's scheduler tracer.

pub mod command;
pub mod metrics;
pub mod skel;
pub mod tracer;
