//! `btrace hist`: per-syscall latency histograms computed in the kernel.

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::core::abi::MAX_SYSCALLS;
use crate::core::delta::Deltas;
use crate::core::output::Output;
use crate::core::scope::{Scope, ScopeArgs};
use crate::core::session::{Closing, Session, Step, TraceArgs};
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
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_threads: Option<u32>,
    /// Use only this hook, no fallback (default: the cheapest the kernel accepts:
    /// tp_btf, then raw_tp, then the classic tracepoint)
    #[arg(long, value_enum)]
    pub hook: Option<Hook>,
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
    fn since_last(&mut self, hist: &Hist) -> Result<Vec<(u32, Log2Hist)>> {
        let mut delta: Vec<(u32, Log2Hist)> = tracer::read_totals(hist, &self.keys)?
            .iter()
            .map(|(nr, now)| (*nr, self.deltas.step(nr, now)))
            .filter(|(_, h)| h.count > 0)
            .collect();
        delta.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
        Ok(delta)
    }

    /// With --interval, the last partial interval is printed only if it holds anything.
    fn since_last_is_empty(&self, hist: &Hist) -> Result<bool> {
        Ok(tracer::read_totals(hist, &self.keys)?
            .iter()
            .all(|(nr, now)| self.deltas.peek(nr, now).count == 0))
    }
}

fn print_hists(out: &mut Output, hists: &[(u32, Log2Hist)], top: Option<usize>) -> Result<()> {
    let shown = &hists[..top.unwrap_or(usize::MAX).min(hists.len())];
    for (nr, h) in shown {
        let name = syscalls::name(*nr);
        if out.json {
            out.record(&json!({
                "type": "hist", "syscall": name, "nr": nr, "unit": "us",
                "total": h.count, "sum_ns": h.sum_ns, "buckets": h.json_buckets(),
            }))?;
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
    if !out.json && hists.is_empty() {
        out.line("(no syscalls completed)")?;
    }
    Ok(())
}

pub fn run(args: HistArgs) -> Result<()> {
    let c = &args.common;
    crate::core::system::preflight()?;
    let syscalls = args
        .syscalls
        .as_deref()
        .map(syscalls::parse_list)
        .transpose()?;
    let mut session = Session::new(c)?;
    let cfg = Config {
        scope: Scope::new(session.tgid(), &args.scope)?,
        syscalls,
        max_threads: args.max_threads,
        count_processes: false,
    };
    let mut candidates = tracer::ways(cfg.max_threads.is_some());
    candidates.retain(|w| args.hook.is_none_or(|h| w.hook == h));
    let (way, hist, _links) = tracer::load_first(&candidates, &cfg)?;
    let mut out = Output::new(c.json);
    let mut reader = Reader::new(&cfg);
    let mut interval_no = 0u64;
    session.attached("syscalls")?;
    let end = session.run(|step| {
        match step {
            // The histograms live in the kernel; there are no events to consume.
            Step::Poll(wait) => std::thread::sleep(wait),
            Step::Interval => {
                interval_no += 1;
                if !out.json {
                    out.line(&format!("--- interval {interval_no} ---"))?;
                }
                print_hists(&mut out, &reader.since_last(&hist)?, args.top)?;
                out.flush()?;
            }
        }
        Ok(())
    })?;
    if c.interval.is_none() || !reader.since_last_is_empty(&hist)? {
        print_hists(&mut out, &reader.since_last(&hist)?, args.top)?;
    }
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
