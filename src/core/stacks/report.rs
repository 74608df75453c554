// SPDX-License-Identifier: Apache-2.0
//! How a profiler (`profile`, `offcpu`) shows its stacks: its flags, and the report
//! (JSON records, folded lines, text, the SVG flame graph).

use anyhow::Result;
use serde_json::Value;

use super::STACK_MAX_DEPTH;
use crate::model::stacks::Stack;

/// How a profiler (`profile`, `offcpu`) shows its stacks.
#[derive(clap::Args, Debug, Clone)]
pub struct StackOutArgs {
    /// Walk only kernel stacks, not user stacks (all threads are still counted; named
    /// apart from offcputime's -k, which keeps kernel threads only)
    #[arg(long, conflicts_with = "user_stacks")]
    pub kernel_stacks: bool,
    /// Walk only user stacks, not kernel stacks (all threads are still counted; named
    /// apart from offcputime's -u, which keeps user threads only)
    #[arg(long)]
    pub user_stacks: bool,
    /// Print folded stacks (`comm;frame;frame value`, root first: what flamegraph.pl,
    /// inferno, speedscope and Pyroscope read) instead of the top stacks
    #[arg(long, conflicts_with = "json")]
    pub folded: bool,
    /// Also write an SVG flame graph to FILE
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
    /// Text: show the N biggest stacks (per process, threads summed)
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Distinct stacks the kernel keeps between two drains of its tables (each up to 127
    /// frames, about 1 KB, in each of two buffers); more are counted as lost (stack
    /// table full)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_STACKS, value_parser = parse_max_stacks)]
    pub max_stacks: u32,
    /// Entries of each counts buffer (testing builds: a small table shows the draining)
    #[cfg(feature = "testing")]
    #[arg(long, hide = true, value_name = "N")]
    pub max_counts: Option<u32>,
    /// Never drain the tables while running (testing builds: what a test must fail with)
    #[cfg(feature = "testing")]
    #[arg(long, hide = true)]
    pub no_drain: bool,
}

impl StackOutArgs {
    /// The bound of each counts buffer: `default`, or the testing flag's.
    pub fn max_counts(&self, default: u32) -> u32 {
        #[cfg(feature = "testing")]
        return self.max_counts.unwrap_or(default);
        #[cfg(not(feature = "testing"))]
        default
    }

    /// Whether the tables are drained while running (always, but in a test's control run).
    pub fn drain(&self) -> bool {
        #[cfg(feature = "testing")]
        return !self.no_drain;
        #[cfg(not(feature = "testing"))]
        true
    }
}

/// Distinct stacks per buffer between two drains: at 999 Hz on 2 CPUs a buffer takes at
/// most 4,000 stacks a second (kernel and user), and it is drained once a second, or
/// within 100 ms of passing half full.
pub const DEFAULT_MAX_STACKS: u32 = 8192;
/// At most this many stacks: each takes about 1 KB of kernel memory, preallocated.
pub const MAX_STACKS_LIMIT: u32 = 1 << 20;

fn parse_max_stacks(s: &str) -> std::result::Result<u32, String> {
    crate::core::system::parse_store_size(
        s,
        MAX_STACKS_LIMIT,
        "each stack takes about 1 KB of kernel memory in each of two buffers",
        16,
        (2 * STACK_MAX_DEPTH * 8 + 16) as u64,
    )
}

/// What a profiler's values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Samples (profile): value = count.
    Samples,
    /// Nanoseconds blocked (offcpu): value = ns, count = blocks.
    BlockedNs,
}

/// `--svg`'s file, opened before anything is attached (see
/// [`OutputFile`](crate::core::output::OutputFile)).
pub fn open_svg(args: &StackOutArgs) -> Result<Option<crate::core::output::OutputFile>> {
    args.svg
        .as_deref()
        .map(|p| crate::core::output::OutputFile::create(p, "--svg"))
        .transpose()
}

/// Prints counted stacks: JSON records, folded lines, or the top stacks as text; writes
/// the SVG flame graph to `svg` (from [`open_svg`]) when asked. `title` heads the flame
/// graph. `seen` is what the programs saw, kept or lost: percentages are of it, and the
/// text says how much of it was kept when some was lost.
pub fn report(
    out: &mut crate::core::output::Output,
    stacks: &[Stack],
    args: &StackOutArgs,
    svg: Option<crate::core::output::OutputFile>,
    measure: Measure,
    title: &str,
    seen: crate::core::stack_tables::Seen,
) -> Result<()> {
    use crate::model::stacks::{by_process, folded, json_stack, text_stack, write_folded};
    let lines = folded(stacks);
    if let Some(file) = svg {
        let unit = match measure {
            Measure::Samples => "samples",
            Measure::BlockedNs => "ns",
        };
        let path = file.path().to_path_buf();
        crate::model::stacks::write_svg(file, &path, &lines, title, unit)?;
    }
    let kept_value: u64 = stacks.iter().map(|s| s.value).sum();
    let kept_count: u64 = stacks.iter().map(|s| s.count).sum();
    let total = kept_value.max(seen.value);
    if out.json {
        let mut sorted: Vec<&Stack> = stacks.iter().collect();
        sorted.sort_by(|a, b| {
            b.value
                .cmp(&a.value)
                .then(a.pid.cmp(&b.pid))
                .then(a.tid.cmp(&b.tid))
        });
        for s in sorted {
            let mut rec = serde_json::Map::new();
            rec.insert("type".into(), "stack".into());
            let fields = json_stack(s);
            // who first, then how much, then the stacks
            for k in ["pid", "tid", "comm"] {
                rec.insert(k.into(), fields[k].clone());
            }
            match measure {
                Measure::Samples => {
                    rec.insert("samples".into(), s.value.into());
                }
                Measure::BlockedNs => {
                    rec.insert("total_ns".into(), s.value.into());
                    rec.insert("blocks".into(), s.count.into());
                }
            }
            rec.insert("kernel_stack".into(), fields["kernel_stack"].clone());
            rec.insert("user_stack".into(), fields["user_stack"].clone());
            out.record(&Value::Object(rec))?;
        }
        return Ok(());
    }
    if args.folded {
        let mut buf = Vec::new();
        write_folded(&mut buf, &lines)?;
        for l in String::from_utf8_lossy(&buf).lines() {
            out.line(l)?;
        }
        return Ok(());
    }
    if seen.count > kept_count {
        let (what, of) = match measure {
            Measure::Samples => ("samples", format!("all {} samples", seen.count)),
            Measure::BlockedNs => (
                "blocks",
                format!(
                    "all {} blocked, lost blocks included",
                    crate::model::units::fmt_ns(total as f64)
                ),
            ),
        };
        out.line(&format!(
            "{kept_count} of {} {what} kept ({} lost: the kernel's table was full); percentages are of {of}",
            seen.count,
            seen.count - kept_count,
        ))?;
        out.line("")?;
    }
    let merged = by_process(stacks);
    for s in merged.iter().take(args.top) {
        let pct = if total > 0 {
            100.0 * s.value as f64 / total as f64
        } else {
            0.0
        };
        let how = match measure {
            Measure::Samples => format!(
                "{} sample{} ({pct:.1} %)",
                s.value,
                if s.value == 1 { "" } else { "s" }
            ),
            Measure::BlockedNs => format!(
                "{} blocked in {} block{} ({pct:.1} %)",
                crate::model::units::fmt_ns(s.value as f64),
                s.count,
                if s.count == 1 { "" } else { "s" }
            ),
        };
        let comm = crate::model::bytes::escape_text(&s.comm);
        for l in text_stack(s, &format!("@[{comm} {}] {how}", s.pid)) {
            out.line(&l)?;
        }
        out.line("")?;
    }
    if merged.len() > args.top {
        out.line(&format!(
            "({} more stacks not shown: --top N shows more, --folded or --json all)",
            merged.len() - args.top
        ))?;
    }
    if merged.is_empty() {
        out.line("(no stacks recorded)")?;
    }
    Ok(())
}
