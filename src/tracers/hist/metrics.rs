// SPDX-License-Identifier: Apache-2.0
//! The syscall group's metric family for the exporter: one latency histogram per syscall
//! that completed at least once since load (series of idle syscalls are left out).

use crate::model::histogram::Log2Hist;
use crate::model::metrics::{log2_histogram, Kind, Metrics, Value};
use crate::resolve::syscalls;

pub const LATENCY: &str = "btrace_syscall_latency_seconds";

const HELP: &str = "Syscall latency, entry to exit, per syscall (kernel log2 buckets).";

pub fn families(totals: &[(u32, Log2Hist)], out: &mut Metrics) {
    let fam = out.family(LATENCY, Kind::Histogram, HELP);
    for (nr, h) in totals.iter().filter(|(_, h)| h.count > 0) {
        fam.add(
            &[("syscall", &syscalls::name(*nr))],
            Value::Hist(log2_histogram(h)),
        );
    }
}

/// `--by cgroup`: one histogram per (cgroup label, syscall), `other` included; per
/// syscall they add up to the totals.
pub fn by_cgroup(series: &[(String, u32, Log2Hist)], out: &mut Metrics) {
    let fam = out.family(LATENCY, Kind::Histogram, HELP);
    for (cgroup, nr, h) in series.iter().filter(|(_, _, h)| h.count > 0) {
        fam.add(
            &[("cgroup", cgroup), ("syscall", &syscalls::name(*nr))],
            Value::Hist(log2_histogram(h)),
        );
    }
}
