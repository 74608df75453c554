// SPDX-License-Identifier: Apache-2.0
//! Log2 latency histograms as the kernel programs keep them (bucket 0 = [0,1) us,
//! bucket i = [2^(i-1), 2^i) us, the last bucket open-ended), with rendering in
//! bpftrace's style and as JSON, and percentile estimates.

use serde_json::{json, Value};

use crate::model::abi::{types, HIST_BUCKETS};
use crate::model::delta::Cumulative;

/// Buckets of every histogram (HIST_BUCKETS of the kernel side).
pub const BUCKETS: usize = HIST_BUCKETS;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Log2Hist {
    pub count: u64,
    pub sum_ns: u64,
    pub buckets: [u64; BUCKETS],
}

impl Log2Hist {
    pub fn add(&mut self, other: &Log2Hist) {
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
    }

    /// self - earlier: what accumulated since `earlier` was read (counters only grow).
    pub fn since(&self, earlier: &Log2Hist) -> Log2Hist {
        self.field_by_field(earlier, u64::wrapping_sub)
    }

    /// `f` of each field of self and the same field of `other`: count, sum and buckets.
    pub fn field_by_field(&self, other: &Log2Hist, f: impl Fn(u64, u64) -> u64) -> Log2Hist {
        let mut d = Log2Hist {
            count: f(self.count, other.count),
            sum_ns: f(self.sum_ns, other.sum_ns),
            ..Default::default()
        };
        for i in 0..BUCKETS {
            d.buckets[i] = f(self.buckets[i], other.buckets[i]);
        }
        d
    }

    /// The sum of per-CPU copies of the kernel's struct hist.
    pub fn sum_cpus(cpus: &[types::hist]) -> Log2Hist {
        let mut sum = Log2Hist::default();
        for cpu in cpus {
            sum.add(&Log2Hist::from(cpu));
        }
        sum
    }

    pub fn avg_ns(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ns as f64 / self.count as f64)
    }

    /// Estimated percentile in microseconds: the upper bound of the bucket that holds it
    /// (a histogram cannot say more). None for an empty histogram.
    pub fn percentile_us(&self, p: f64) -> Option<u64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_bounds(i).1.unwrap_or(bucket_bounds(i).0));
            }
        }
        None
    }

    /// The percentiles every histogram record shows, as JSON fields `p50_us`, `p90_us`,
    /// `p99_us` (bucket upper bounds; null for an empty histogram).
    pub fn percentile_fields(&self, rec: &mut serde_json::Map<String, Value>) {
        for p in [50u32, 90, 99] {
            rec.insert(format!("p{p}_us"), self.percentile_us(p.into()).into());
        }
    }

    /// The same for text: `p50 < 2 us, p90 < 4 us, p99 < 16 us` (empty for no samples).
    pub fn percentile_text(&self) -> String {
        [50u32, 90, 99]
            .iter()
            .filter_map(|&p| {
                self.percentile_us(p.into())
                    .map(|v| format!("p{p} < {} us", human(v)))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Index range of the non-empty part (first to last non-zero bucket).
    fn used_range(&self) -> Option<(usize, usize)> {
        let first = self.buckets.iter().position(|&n| n > 0)?;
        let last = self.buckets.iter().rposition(|&n| n > 0)?;
        Some((first, last))
    }

    /// JSON buckets from the first to the last non-empty one; `hi` is null for the
    /// open-ended last bucket.
    pub fn json_buckets(&self) -> Value {
        let Some((first, last)) = self.used_range() else {
            return json!([]);
        };
        Value::Array(
            (first..=last)
                .map(|i| {
                    let (lo, hi) = bucket_bounds(i);
                    json!({"lo": lo, "hi": hi, "count": self.buckets[i]})
                })
                .collect(),
        )
    }

    /// A titled histogram as `hist` prints it: `LABEL: N calls, avg .., total .., p50 ..`
    /// and its rows (`hist` labels `@name` or `@name [who]`).
    pub fn text_block(&self, label: &str) -> Vec<String> {
        let mut lines = vec![format!(
            "{label}: {} call{}, avg {}, total {}, {}   (buckets: latency in us)",
            self.count,
            if self.count == 1 { "" } else { "s" },
            crate::model::units::fmt_ns(self.avg_ns().unwrap_or(0.0)),
            crate::model::units::fmt_ns(self.sum_ns as f64),
            self.percentile_text(),
        )];
        lines.extend(self.render(40));
        lines
    }

    /// bpftrace-style rows: `[2, 4)   1234 |@@@@@@   |`, bounds in microseconds.
    pub fn render(&self, width: usize) -> Vec<String> {
        let Some((first, last)) = self.used_range() else {
            return Vec::new();
        };
        let max = *self.buckets.iter().max().unwrap_or(&1);
        let labels: Vec<String> = (first..=last)
            .map(|i| match bucket_bounds(i) {
                (lo, Some(hi)) => format!("[{}, {})", human(lo), human(hi)),
                (lo, None) => format!("[{}, ...)", human(lo)),
            })
            .collect();
        let label_w = labels.iter().map(String::len).max().unwrap_or(0);
        let count_w = self.buckets[first..=last]
            .iter()
            .map(|n| n.to_string().len())
            .max()
            .unwrap_or(1);
        (first..=last)
            .zip(labels)
            .map(|(i, label)| {
                let n = self.buckets[i];
                let bar = (n as u128 * width as u128 / max.max(1) as u128) as usize;
                format!(
                    "{label:<label_w$} {n:>count_w$} |{}{}|",
                    "@".repeat(bar),
                    " ".repeat(width - bar)
                )
            })
            .collect()
    }
}

impl From<&types::hist> for Log2Hist {
    fn from(h: &types::hist) -> Self {
        Log2Hist {
            count: h.count,
            sum_ns: h.sum_ns,
            buckets: h.buckets,
        }
    }
}

impl Cumulative for Log2Hist {
    fn since(&self, earlier: &Self) -> Option<Self> {
        (self.count >= earlier.count).then(|| Log2Hist::since(self, earlier))
    }
}

/// [lo, hi) of bucket i in microseconds; hi is None for the last, open-ended bucket.
pub fn bucket_bounds(i: usize) -> (u64, Option<u64>) {
    let lo = if i == 0 { 0 } else { 1u64 << (i - 1) };
    let hi = (i + 1 < BUCKETS).then(|| 1u64 << i);
    (lo, hi)
}

/// 1024 -> "1K", 1048576 -> "1M" (bpftrace's suffixes for power-of-two bounds).
pub fn human(v: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
    for (size, suffix) in UNITS {
        if v >= size && v.is_multiple_of(size) {
            return format!("{}{suffix}", v / size);
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_follow_log2_of_microseconds() {
        assert_eq!(bucket_bounds(0), (0, Some(1)));
        assert_eq!(bucket_bounds(1), (1, Some(2)));
        assert_eq!(bucket_bounds(2), (2, Some(4)));
        assert_eq!(bucket_bounds(11), (1024, Some(2048)));
        assert_eq!(bucket_bounds(BUCKETS - 1).1, None);
    }

    #[test]
    fn suffixes_only_for_exact_powers() {
        assert_eq!(human(512), "512");
        assert_eq!(human(1024), "1K");
        assert_eq!(human(2 << 20), "2M");
        assert_eq!(human(1000), "1000");
    }

    #[test]
    fn render_spans_first_to_last_nonzero_and_scales_bars() {
        let mut h = Log2Hist::default();
        h.buckets[1] = 10;
        h.buckets[3] = 5;
        let rows = h.render(10);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], "[1, 2) 10 |@@@@@@@@@@|");
        assert_eq!(rows[1], "[2, 4)  0 |          |");
        assert_eq!(rows[2], "[4, 8)  5 |@@@@@     |");
    }

    #[test]
    fn percentiles_and_deltas() {
        let mut a = Log2Hist::default();
        a.buckets[0] = 98;
        a.buckets[5] = 2;
        a.count = 100;
        assert_eq!(a.percentile_us(50.0), Some(1));
        assert_eq!(a.percentile_us(99.0), Some(32));
        let mut b = a;
        b.add(&a);
        assert_eq!(b.since(&a), a);
        assert_eq!(Log2Hist::default().percentile_us(50.0), None);
    }
}
