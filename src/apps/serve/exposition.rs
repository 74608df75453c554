// SPDX-License-Identifier: Apache-2.0
//! Writes [`Metrics`] in the Prometheus text format 0.0.4 or in OpenMetrics 1.0, chosen
//! by the scraper's `Accept` header.
//!
//! A small encoder of our own: of the well-kept crates, `prometheus` writes only the
//! 0.0.4 text format and `prometheus-client` only OpenMetrics, and both want their own
//! registry of live metric objects, while btrace's figures are read from kernel maps at
//! scrape time. The two formats differ in little: the counter family's name in `# TYPE`,
//! escaping in `# HELP`, and OpenMetrics' closing `# EOF`.

use std::fmt::Write;

use crate::model::metrics::{Family, Kind, Metrics, Series, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when `Accept` names `application/openmetrics-text` (with a q above 0),
    /// the Prometheus text format otherwise (no header, `*/*`, `text/plain`).
    pub fn from_accept(accept: Option<&str>) -> Format {
        let wants_om = accept.is_some_and(|a| {
            a.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or("");
                let q = parts
                    .filter_map(|p| p.strip_prefix("q="))
                    .filter_map(|q| q.trim().parse::<f64>().ok())
                    .next()
                    .unwrap_or(1.0);
                media.eq_ignore_ascii_case("application/openmetrics-text") && q > 0.0
            })
        });
        if wants_om {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A label value between double quotes: backslash, double quote and line feed escaped
/// (the same in both formats).
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    push_label_value(&mut out, v);
    out
}

/// [`escape_label_value`] written straight into `out` (a scrape writes tens of thousands).
fn push_label_value(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `# HELP` text: backslash and line feed escaped; OpenMetrics escapes double quotes too.
fn escape_help(v: &str, f: Format) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if f == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn labels(out: &mut String, series: &Series, extra: Option<(&str, &str)>) {
    if series.labels.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let all = series
        .labels
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(extra);
    for (i, (k, v)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        push_label_value(out, v);
        out.push('"');
    }
    out.push('}');
}

fn sample(
    out: &mut String,
    name: &str,
    series: &Series,
    extra: Option<(&str, &str)>,
    v: impl std::fmt::Display,
) {
    out.push_str(name);
    labels(out, series, extra);
    let _ = writeln!(out, " {v}");
}

fn family(out: &mut String, fam: &Family, f: Format) {
    let kind = match fam.kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    };
    // 0.0.4 names the counter by its sample (`x_total`); OpenMetrics by its family (`x`).
    let total = format!("{}_total", fam.name);
    let meta_name = match (fam.kind, f) {
        (Kind::Counter, Format::Prometheus) => total.as_str(),
        _ => fam.name.as_str(),
    };
    let _ = writeln!(out, "# HELP {meta_name} {}", escape_help(fam.help, f));
    let _ = writeln!(out, "# TYPE {meta_name} {kind}");
    let bucket = format!("{}_bucket", fam.name);
    let sum = format!("{}_sum", fam.name);
    let count = format!("{}_count", fam.name);
    for s in &fam.series {
        match &s.value {
            Value::Int(v) if fam.kind == Kind::Counter => sample(out, &total, s, None, v),
            Value::Float(v) if fam.kind == Kind::Counter => sample(out, &total, s, None, float(*v)),
            Value::Int(v) => sample(out, &fam.name, s, None, v),
            Value::Float(v) => sample(out, &fam.name, s, None, float(*v)),
            Value::Hist(h) => {
                // Every bucket line starts the same way up to the `le` value: written once
                // per series and copied (a scrape by cgroup writes a hundred thousand lines).
                let mut head = String::with_capacity(bucket.len() + 64);
                head.push_str(&bucket);
                labels(&mut head, s, Some(("le", "")));
                head.truncate(head.len() - 2); // the empty value's closing `"}`
                let mut n_text = itoa::Buffer::new();
                for (le, n) in h
                    .buckets
                    .iter()
                    .map(|(le, n)| (*le, *n))
                    .chain([("+Inf", h.count)])
                {
                    out.push_str(&head);
                    out.push_str(le);
                    out.push_str("\"} ");
                    out.push_str(n_text.format(n));
                    out.push('\n');
                }
                sample(out, &sum, s, None, float(h.sum));
                sample(out, &count, s, None, h.count);
            }
        }
    }
}

/// The whole exposition.
pub fn encode(m: &Metrics, f: Format) -> String {
    // Sized for the whole body at once (a few MB with many cgroups): no regrowth copies.
    let bytes: usize = m
        .families
        .iter()
        .flat_map(|fam| fam.series.iter().map(|s| (fam.name.len(), s)))
        .map(|(name, s)| {
            let labels: usize = s.labels.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
            let line = name + labels + 40; // suffix, `le`, braces, the value
            match &s.value {
                Value::Hist(h) => (h.buckets.len() + 3) * line,
                _ => line,
            }
        })
        .sum();
    let mut out = String::with_capacity(64 * 1024 + bytes);
    for fam in &m.families {
        family(&mut out, fam, f);
    }
    if f == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::histogram::Log2Hist;
    use crate::model::metrics::log2_histogram;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("x\ny"), "x\\ny");
        assert_eq!(escape_label_value("plain é"), "plain é");
        let mut m = Metrics::default();
        m.family("btrace_t", Kind::Gauge, "help with \\ and \"quotes\"\nnext")
            .add(&[("hook", "a\"b\\c\nd")], Value::Int(1));
        assert_eq!(
            encode(&m, Format::Prometheus),
            "# HELP btrace_t help with \\\\ and \"quotes\"\\nnext\n# TYPE btrace_t gauge\nbtrace_t{hook=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
        assert_eq!(
            encode(&m, Format::OpenMetrics),
            "# HELP btrace_t help with \\\\ and \\\"quotes\\\"\\nnext\n# TYPE btrace_t gauge\nbtrace_t{hook=\"a\\\"b\\\\c\\nd\"} 1\n# EOF\n"
        );
    }

    #[test]
    fn counters_are_named_per_format() {
        let mut m = Metrics::default();
        m.family("btrace_c", Kind::Counter, "c")
            .add(&[("k", "v")], Value::Int(7));
        assert_eq!(
            encode(&m, Format::Prometheus),
            "# HELP btrace_c_total c\n# TYPE btrace_c_total counter\nbtrace_c_total{k=\"v\"} 7\n"
        );
        assert_eq!(
            encode(&m, Format::OpenMetrics),
            "# HELP btrace_c c\n# TYPE btrace_c counter\nbtrace_c_total{k=\"v\"} 7\n# EOF\n"
        );
    }

    #[test]
    fn histogram_from_log2_buckets() {
        let mut h = Log2Hist::default();
        h.buckets[0] = 1; // [0, 1) us
        h.buckets[2] = 2; // [2, 4) us
        h.count = 3;
        h.sum_ns = 6_500;
        let mut m = Metrics::default();
        m.family("btrace_h_seconds", Kind::Histogram, "h")
            .add(&[("syscall", "read")], Value::Hist(log2_histogram(&h)));
        let text = encode(&m, Format::Prometheus);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            "btrace_h_seconds_bucket{syscall=\"read\",le=\"0.000001\"} 1"
        );
        assert_eq!(
            lines[3],
            "btrace_h_seconds_bucket{syscall=\"read\",le=\"0.000002\"} 1"
        );
        assert_eq!(
            lines[4],
            "btrace_h_seconds_bucket{syscall=\"read\",le=\"0.000004\"} 3"
        );
        assert!(text.contains("btrace_h_seconds_bucket{syscall=\"read\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("btrace_h_seconds_sum{syscall=\"read\"} 0.0000065\n"));
        assert!(text.ends_with("btrace_h_seconds_count{syscall=\"read\"} 3\n"));
        // Cumulative, never decreasing, up to +Inf.
        let counts: Vec<u64> = text
            .lines()
            .filter(|l| l.contains("_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*counts.last().unwrap(), 3);
    }

    #[test]
    fn accept_negotiation() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
        assert_eq!(
            Format::from_accept(Some("text/plain;version=0.0.4")),
            Format::Prometheus
        );
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text; q=0")),
            Format::Prometheus
        );
    }

    #[test]
    fn special_floats() {
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(0.25), "0.25");
        assert_eq!(float(0.0), "0");
    }
}
