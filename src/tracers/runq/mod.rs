//! Run-queue latency: the dashboard's scheduler tracer.

pub mod skel;
pub mod tracer;
