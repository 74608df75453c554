// SPDX-License-Identifier: Apache-2.0
//! The tcp group's metric families for the exporter, from the counters the kernel keeps
//! (enum tcp_stat in tcp.h, read by [`super::tracer::stats`]).

use crate::model::metrics::{log2_histogram, Kind, Metrics, Value};

use super::tracer::TcpStats;

pub fn families(s: &TcpStats, out: &mut Metrics) {
    out.family(
        "btrace_tcp_connections_opened",
        Kind::Counter,
        "TCP connections established: active (this end connected) or passive (accepted).",
    )
    .add(&[("direction", "active")], Value::Int(s.opened_active))
    .add(&[("direction", "passive")], Value::Int(s.opened_passive));
    let counters: [(&str, &'static str, u64); 6] = [
        (
            "btrace_tcp_connections_closed",
            "Established TCP connections that ended.",
            s.closed,
        ),
        (
            "btrace_tcp_resets",
            "Established TCP connections that ended without a FIN exchange (reset or aborted).",
            s.resets,
        ),
        (
            "btrace_tcp_connect_failures",
            "Connection attempts that failed (SYN_SENT to CLOSE: refused, reset or timed out).",
            s.connect_failures,
        ),
        (
            "btrace_tcp_sent_bytes",
            "Payload bytes acknowledged by the peer, of closed connections.",
            s.tx_bytes,
        ),
        (
            "btrace_tcp_received_bytes",
            "Payload bytes received, of closed connections.",
            s.rx_bytes,
        ),
        (
            "btrace_tcp_sent_bytes_unknown_connections",
            "Closed connections whose sent bytes are not exact (born before loading), not in btrace_tcp_sent_bytes_total.",
            s.tx_unknown,
        ),
    ];
    for (name, help, v) in counters {
        out.family(name, Kind::Counter, help)
            .add(&[], Value::Int(v));
    }
    out.family(
        "btrace_tcp_connection_duration_seconds",
        Kind::Histogram,
        "Established to closed, per closed connection (kernel log2 buckets).",
    )
    .add(&[], Value::Hist(log2_histogram(&s.durations)));
}
