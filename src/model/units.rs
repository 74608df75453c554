// SPDX-License-Identifier: Apache-2.0
//! Durations as people read them.

/// A duration in nanoseconds with a unit chosen for reading: "812 ns", "3.21 us", "4.05 ms", "1.20 s".
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A latency in one token, for event lines: "812ns", "3.2us", "4.05ms".
pub fn fmt_latency(ns: u64) -> String {
    match ns {
        n if n < 10_000 => format!("{n}ns"),
        n if n < 10_000_000 => format!("{:.1}us", n as f64 / 1e3),
        n => format!("{:.2}ms", n as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(fmt_ns(812.0), "812 ns");
        assert_eq!(fmt_ns(3210.0), "3.21 us");
        assert_eq!(fmt_ns(1.2e9), "1.20 s");
        assert_eq!(fmt_latency(9_999), "9999ns");
        assert_eq!(fmt_latency(12_300), "12.3us");
        assert_eq!(fmt_latency(40_500_000), "40.50ms");
    }
}
