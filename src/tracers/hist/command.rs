// SPDX-License-Identifier: Apache-2.0
//! `btrace hist`: per-syscall latency histograms computed in the kernel.

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::core::abi::MAX_SYSCALLS;
use crate::core::delta::Deltas;
use crate::core::output::Output;
use crate::core::scope::{Scope, ScopeArgs};
use crate::core::session::{Closing, IntervalArgs, Session, Step, TraceArgs};
use crate::model::histogram::Log2Hist;
use crate::model::units::fmt_ns;
use crate::resolve::syscalls;

use super::skel::Hist;
use super::tracer::{self, Config, Hook};

#[derive(Args, Debug, Clone)]
pub struct HistArgs {
    #[command(flatten)]
    pub common: TraceArgs,
    #[command(flatten)]
    pub interval: IntervalArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Only these syscalls (comma-separated names, e.g. read,write,openat)
    #[arg(long, value_name = "NAMES")]
    pub syscalls: Option<String>,
    /// Show only the N busiest syscalls
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Bound of the per-thread entry store (threads making traced syscalls, alive at
    /// once; default: twice the threads alive now, at least 32768); setting it selects
    /// the bounded hash store instead of task storage
    #[arg(long, value_name = "N", value_parser = tracer::parse_max_threads)]
    pub max_threads: Option<u32>,
    /// Use only this hook, no fallback (default: the cheapest the kernel accepts:
    /// tp_btf, then raw_tp, then the classic tracepoint)
    #[arg(long, value_enum)]
    pub hook: Option<Hook>,
}

/// One syscall's figures for one interval (or the whole run without -i).
struct Row {
    nr: u32,
    /// This interval.
    interval: Log2Hist,
    /// Calls since tracing began.
    total: u64,
}

/// Per-syscall histograms, turned from cumulative counters into per-interval ones.
struct Reader {
    keys: Vec<u32>,
    deltas: Deltas<u32, Log2Hist>,
}

impl Reader {
    fn new(cfg: &Config) -> Self {
        let keys = cfg
            .syscalls
            .clone()
            .unwrap_or_else(|| (0..MAX_SYSCALLS).collect());
        Reader {
            keys,
            deltas: Deltas::default(),
        }
    }

    /// What accumulated since the last call, busiest first, without idle syscalls.
    fn since_last(&mut self, hist: &Hist) -> Result<Vec<Row>> {
        let mut rows: Vec<Row> = tracer::read_totals(hist, &self.keys)?
            .iter()
            .map(|(nr, now)| Row {
                nr: *nr,
                interval: self.deltas.step(nr, now),
                total: now.count,
            })
            .filter(|r| r.interval.count > 0)
            .collect();
        rows.sort_by(|a, b| {
            b.interval
                .count
                .cmp(&a.interval.count)
                .then(a.nr.cmp(&b.nr))
        });
        Ok(rows)
    }
}

/// Which interval a printout is, with -i: its number (from 0) and its bounds in seconds
/// since tracing began, and CLOCK_MONOTONIC (the clock of event timestamps).
struct IntervalMark {
    number: u64,
    start_s: f64,
    end_s: f64,
    start_ns: u64,
    end_ns: u64,
}

fn print_hists(
    out: &mut Output,
    rows: &[Row],
    top: Option<usize>,
    mark: Option<&IntervalMark>,
) -> Result<()> {
    if let Some(m) = mark {
        if out.json {
            out.record(&json!({
                "type": "interval", "interval": m.number,
                "start_s": m.start_s, "end_s": m.end_s,
                "start_ns": m.start_ns, "end_ns": m.end_ns,
                "syscalls": rows.len(),
                "calls": rows.iter().map(|r| r.interval.count).sum::<u64>(),
            }))?;
        } else {
            out.line(&format!(
                "--- interval {}: {:.3} s to {:.3} s ---",
                m.number, m.start_s, m.end_s
            ))?;
        }
    }
    let shown = &rows[..top.unwrap_or(usize::MAX).min(rows.len())];
    for r in shown {
        let name = syscalls::name(r.nr);
        let h = &r.interval;
        if out.json {
            let mut rec = json!({
                "type": "hist", "syscall": name, "nr": r.nr, "unit": "us",
                "count": h.count, "total": r.total, "sum_ns": h.sum_ns,
                "buckets": h.json_buckets(),
            });
            if let Some(m) = mark {
                rec["interval"] = m.number.into();
            }
            out.record(&rec)?;
        } else {
            out.line(&format!(
                "@{name}: {} call{}, avg {}, total {}   (buckets: latency in us)",
                h.count,
                if h.count == 1 { "" } else { "s" },
                fmt_ns(h.avg_ns().unwrap_or(0.0)),
                fmt_ns(h.sum_ns as f64)
            ))?;
            for row in h.render(40) {
                out.line(&row)?;
            }
            out.line("")?;
        }
    }
    if !out.json && rows.is_empty() {
        out.line("(no syscalls completed)")?;
    }
    Ok(())
}

pub fn run(args: HistArgs) -> Result<i32> {
    let c = &args.common;
    crate::core::system::preflight()?;
    let syscalls = args
        .syscalls
        .as_deref()
        .map(syscalls::parse_list)
        .transpose()?;
    let mut session = Session::new(c, args.interval.interval)?;
    let cfg = Config {
        scope: Scope::new(session.tgid(), &args.scope)?,
        syscalls,
        max_threads: args.max_threads,
        count_processes: false,
    };
    let mut candidates = tracer::ways(cfg.max_threads.is_some());
    candidates.retain(|w| args.hook.is_none_or(|h| w.hook == h));
    let (way, hist, _links) = tracer::load_first(&candidates, &cfg)?;
    if way.hook != tracer::Hook::Tracepoint {
        // Only with an explicit --hook: auto takes the tracepoint way first on such kernels.
        if let Some(why) = crate::core::features::syscall_hooks_skip_runs() {
            eprintln!("btrace: note: {why}: runs the kernel skips are counted as missed; --hook tracepoint misses none");
        }
    }
    let mut out = Output::to(c.json, c.output.as_deref())?;
    let mut reader = Reader::new(&cfg);
    session.attached("syscalls")?;
    let start = session.started();
    let start_ns = crate::core::system::monotonic_ns();
    let mut mark = session.interval().map(|_| IntervalMark {
        number: 0,
        start_s: 0.0,
        end_s: 0.0,
        start_ns,
        end_ns: start_ns,
    });
    // Closes the current interval at now, prints it, and opens the next one.
    let mut close_interval = |out: &mut Output, mark: &mut Option<IntervalMark>| -> Result<()> {
        let rows = reader.since_last(&hist)?;
        if let Some(m) = mark.as_mut() {
            m.end_s = start.elapsed().as_secs_f64();
            m.end_ns = crate::core::system::monotonic_ns();
        }
        print_hists(out, &rows, args.top, mark.as_ref())?;
        out.flush()?;
        if let Some(m) = mark.as_mut() {
            m.number += 1;
            m.start_s = m.end_s;
            m.start_ns = m.end_ns;
        }
        Ok(())
    };
    let end = session.run(|step| {
        match step {
            // The histograms live in the kernel; there are no events to consume.
            Step::Poll(wait) => std::thread::sleep(wait),
            // Every interval is printed, an empty one too (its record says so).
            Step::Interval => close_interval(&mut out, &mut mark)?,
        }
        Ok(())
    })?;
    // The last (partial) interval, or the whole run.
    close_interval(&mut out, &mut mark)?;
    session.finish(
        &mut out,
        end,
        Closing {
            what: "syscalls",
            hook: &way.hook.to_string(),
            counted: None,
            losses: tracer::losses(&hist)?,
            specific: json!({ "store": way.store.to_string() }),
        },
    )
}
