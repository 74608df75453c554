// SPDX-License-Identifier: Apache-2.0
//! The runq group's metric family for the exporter.

use crate::model::histogram::Log2Hist;
use crate::model::metrics::{log2_histogram, Kind, Metrics, Value};

pub const LATENCY: &str = "btrace_runqueue_latency_seconds";

pub fn families(total: &Log2Hist, out: &mut Metrics) {
    out.family(
        LATENCY,
        Kind::Histogram,
        "Run-queue latency: wakeup to running on a CPU (kernel log2 buckets).",
    )
    .add(&[], Value::Hist(log2_histogram(total)));
}
