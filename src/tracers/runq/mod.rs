// SPDX-License-Identifier: Apache-2.0
//! Run-queue latency: the dashboard's scheduler tracer.

pub mod metrics;
pub mod skel;
pub mod tracer;
