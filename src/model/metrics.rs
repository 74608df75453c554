// SPDX-License-Identifier: Apache-2.0
//! Metric families as the exporter serves them: what each tracer declares beside itself
//! (its `metrics.rs`), before encoding (src/apps/serve/exposition.rs writes them in the
//! Prometheus text format or OpenMetrics). Names follow Prometheus conventions: a
//! `btrace_` prefix, base units (`_seconds`, `_bytes`); a counter family's name has no
//! `_total`, which the encoder adds to its sample.

use crate::model::histogram::{Log2Hist, BUCKETS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A histogram with cumulative buckets: (upper bound as written in `le`, count of
/// observations at or below it); the `+Inf` bucket is `count`.
#[derive(Clone, Debug, PartialEq)]
pub struct HistValue {
    pub buckets: Vec<(&'static str, u64)>,
    pub count: u64,
    pub sum: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
    Hist(HistValue),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// Without `_total` for counters.
    pub name: String,
    pub help: &'static str,
    pub kind: Kind,
    pub series: Vec<Series>,
}

impl Family {
    pub fn add(&mut self, labels: &[(&'static str, &str)], value: Value) -> &mut Self {
        self.series.push(Series {
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value,
        });
        self
    }

    /// [`add`](Self::add) with labels already owned.
    pub fn add_owned(&mut self, labels: Vec<(&'static str, String)>, value: Value) -> &mut Self {
        self.series.push(Series { labels, value });
        self
    }
}

/// Every family of one scrape, in the order first declared.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub families: Vec<Family>,
}

impl Metrics {
    /// The family `name` (`btrace_` prefixed by the caller), made on first use, so several
    /// tracers can add series to one family (per-group health figures).
    pub fn family(&mut self, name: &str, kind: Kind, help: &'static str) -> &mut Family {
        let i = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    help,
                    kind,
                    series: Vec::new(),
                });
                self.families.len() - 1
            }
        };
        debug_assert_eq!(self.families[i].kind, kind, "{name} declared twice");
        &mut self.families[i]
    }
}

/// `n` microseconds written as seconds in decimal, exactly (1 -> "0.000001",
/// 1048576 -> "1.048576").
pub fn us_as_seconds(n: u64) -> String {
    let (whole, frac) = (n / 1_000_000, n % 1_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let f = format!("{frac:06}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// The `le` bounds of the log2 buckets, written once (a scrape writes them for every
/// histogram).
fn le_bounds() -> &'static [String] {
    static LE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    LE.get_or_init(|| (0..BUCKETS).map(|i| us_as_seconds(1u64 << i)).collect())
}

/// A kernel log2 histogram (bucket 0 = [0,1) us, bucket i = [2^(i-1), 2^i) us, the last
/// open-ended) as cumulative `le` buckets in seconds: bucket i's bound is 2^i us (every
/// value in it is below that), the last bucket is only in `+Inf`. `count` and `sum` are
/// the kernel's exact ones; a bucket read while a CPU was adding to it (per-CPU copies are
/// read one after the other) is capped at `count`, so the buckets never exceed `+Inf`.
pub fn log2_histogram(h: &Log2Hist) -> HistValue {
    let mut buckets = Vec::with_capacity(BUCKETS - 1);
    let mut cumulative = 0u64;
    for (i, n) in h.buckets.iter().enumerate().take(BUCKETS - 1) {
        cumulative += n;
        buckets.push((le_bounds()[i].as_str(), cumulative.min(h.count)));
    }
    HistValue {
        buckets,
        count: h.count,
        sum: h.sum_ns as f64 / 1e9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microseconds_in_seconds_exactly() {
        assert_eq!(us_as_seconds(1), "0.000001");
        assert_eq!(us_as_seconds(512), "0.000512");
        assert_eq!(us_as_seconds(1_000_000), "1");
        assert_eq!(us_as_seconds(1 << 20), "1.048576");
        assert_eq!(us_as_seconds(1 << 30), "1073.741824");
    }

    #[test]
    fn log2_buckets_become_cumulative_le_buckets() {
        let mut h = Log2Hist::default();
        // 3 below 1 us, 2 in [1,2) us, 4 in [4,8) us, 1 in the open-ended last bucket.
        h.buckets[0] = 3;
        h.buckets[1] = 2;
        h.buckets[3] = 4;
        h.buckets[BUCKETS - 1] = 1;
        h.count = 10;
        h.sum_ns = 1_500_000_000;
        let v = log2_histogram(&h);
        assert_eq!(v.buckets.len(), BUCKETS - 1);
        assert_eq!(v.buckets[0], ("0.000001", 3));
        assert_eq!(v.buckets[1], ("0.000002", 5));
        assert_eq!(v.buckets[2], ("0.000004", 5));
        assert_eq!(v.buckets[3], ("0.000008", 9));
        // The last finite bound: 2^(BUCKETS-2) us; the open bucket is only in +Inf.
        assert_eq!(
            (
                v.buckets[BUCKETS - 2].0.to_string(),
                v.buckets[BUCKETS - 2].1
            ),
            (us_as_seconds(1 << (BUCKETS - 2)), 9)
        );
        assert_eq!(v.count, 10);
        assert_eq!(v.sum, 1.5);
    }

    #[test]
    fn buckets_never_exceed_count() {
        let mut h = Log2Hist::default();
        h.buckets[2] = 5;
        h.count = 4; // read while a CPU was adding
        let v = log2_histogram(&h);
        assert!(v.buckets.iter().all(|(_, n)| *n <= 4));
    }

    #[test]
    fn families_merge_by_name() {
        let mut m = Metrics::default();
        m.family("btrace_x", Kind::Counter, "x")
            .add(&[("group", "a")], Value::Int(1));
        m.family("btrace_x", Kind::Counter, "x")
            .add(&[("group", "b")], Value::Int(2));
        assert_eq!(m.families.len(), 1);
        assert_eq!(m.families[0].series.len(), 2);
    }
}
