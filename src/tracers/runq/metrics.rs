// SPDX-License-Identifier: Apache-2.0
//! The runq group's metric family for the exporter.

use crate::model::histogram::Log2Hist;
use crate::model::metrics::{log2_histogram, Kind, Metrics, Value};

pub const LATENCY: &str = "btrace_runqueue_latency_seconds";

const HELP: &str = "Run-queue latency: wakeup to running on a CPU (kernel log2 buckets).";

pub fn families(total: &Log2Hist, out: &mut Metrics) {
    out.family(LATENCY, Kind::Histogram, HELP)
        .add(&[], Value::Hist(log2_histogram(total)));
}

/// `--by cgroup`: one histogram per cgroup label (the waiting task's cgroup), `other`
/// included; they add up to the total.
pub fn by_cgroup(series: &[(String, Log2Hist)], out: &mut Metrics) {
    let fam = out.family(LATENCY, Kind::Histogram, HELP);
    for (cgroup, h) in series.iter().filter(|(_, h)| h.count > 0) {
        fam.add(&[("cgroup", cgroup)], Value::Hist(log2_histogram(h)));
    }
}
