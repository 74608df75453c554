// SPDX-License-Identifier: Apache-2.0
//! The tcp group's metric families for the exporter, from the counters the kernel keeps
//! (enum tcp_stat in tcp.h, read by [`super::tracer::stats`]).

use crate::model::metrics::{log2_histogram, Kind, Metrics, Value};

use super::tracer::TcpStats;

/// A counter family: name (without `_total`), help, and its value in a set of figures.
type Counter = (&'static str, &'static str, fn(&TcpStats) -> u64);

/// Every family, one series per entry of `series`: the totals (no label), or with
/// `--by cgroup` one per cgroup label of the sockets (`other` included), which add up to
/// the totals.
pub fn families(series: &[(Option<String>, TcpStats)], out: &mut Metrics) {
    let labels = |cgroup: &Option<String>| -> Vec<(&'static str, String)> {
        cgroup.iter().map(|c| ("cgroup", c.clone())).collect()
    };
    let with = |cgroup: &Option<String>, more: &[(&'static str, &'static str)]| {
        let mut l = labels(cgroup);
        l.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
        l
    };
    let fam = out.family(
        "btrace_tcp_connections_opened",
        Kind::Counter,
        "TCP connections established: active (this end connected) or passive (accepted).",
    );
    for (cgroup, s) in series {
        for (direction, n) in [("active", s.opened_active), ("passive", s.opened_passive)] {
            fam.add_owned(with(cgroup, &[("direction", direction)]), Value::Int(n));
        }
    }
    let counters: [Counter; 6] = [
        (
            "btrace_tcp_connections_closed",
            "Established TCP connections that ended.",
            |s| s.closed,
        ),
        (
            "btrace_tcp_resets",
            "Established TCP connections that ended without a FIN exchange (reset or aborted).",
            |s| s.resets,
        ),
        (
            "btrace_tcp_connect_failures",
            "Connection attempts that failed (SYN_SENT to CLOSE: refused, reset or timed out).",
            |s| s.connect_failures,
        ),
        (
            "btrace_tcp_sent_bytes",
            "Payload bytes acknowledged by the peer, of closed connections.",
            |s| s.tx_bytes,
        ),
        (
            "btrace_tcp_received_bytes",
            "Payload bytes received, of closed connections.",
            |s| s.rx_bytes,
        ),
        (
            "btrace_tcp_connections_sent_bytes_unknown",
            "Closed connections whose sent bytes are not exact (born before loading), not in btrace_tcp_sent_bytes_total.",
            |s| s.tx_unknown,
        ),
    ];
    for (name, help, of) in counters {
        let fam = out.family(name, Kind::Counter, help);
        for (cgroup, s) in series {
            fam.add_owned(labels(cgroup), Value::Int(of(s)));
        }
    }
    let fam = out.family(
        "btrace_tcp_connection_duration_seconds",
        Kind::Histogram,
        "Established to closed, per closed connection (kernel log2 buckets).",
    );
    for (cgroup, s) in series {
        fam.add_owned(labels(cgroup), Value::Hist(log2_histogram(&s.durations)));
    }
}
