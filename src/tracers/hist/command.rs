// SPDX-License-Identifier: Apache-2.0
//! `btrace hist`: per-syscall latency histograms computed in the kernel.

use anyhow::Result;
use clap::Args;
use serde_json::json;

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::core::output::{Output, OutputArgs};
use crate::core::pidns::PidView;
use crate::core::run::{self, AggregateArgs, Aggregation, Checked, Ending, Period};
use crate::core::scope::Scope;
use crate::model::abi::MAX_SYSCALLS;
use crate::model::delta::Deltas;
use crate::model::errno;
use crate::model::histogram::Log2Hist;
use crate::resolve::cgroups::CgroupNames;
use crate::resolve::syscalls;

use super::skel::Hist;
use super::tracer::{self, By, Config, Hook, Outcome};

#[derive(Args, Debug, Clone)]
pub struct HistArgs {
    #[command(flatten)]
    pub common: AggregateArgs,
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
    /// Also a histogram per process, thread or cgroup and syscall ("hist_by" records);
    /// pairs beyond --max-keys are summed in an "other" row per syscall
    #[arg(long, value_enum, value_name = "KEY")]
    pub by: Option<By>,
    /// Bound of --by's (process/thread/cgroup, syscall) pairs (default 16384)
    #[arg(long, value_name = "N", value_parser = tracer::parse_max_keys, requires = "by")]
    pub max_keys: Option<u32>,
    /// Only failed calls (returning -4095..-1)
    #[arg(long, conflicts_with = "errno")]
    pub errors: bool,
    /// Only calls failing with this error (a name such as ENOENT, or a number)
    #[arg(long, value_name = "NAME")]
    pub errno: Option<String>,
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
    by: Deltas<(u64, u32), Log2Hist>,
}

/// One (process/thread/cgroup, syscall) histogram of the breakdown, for one interval.
struct ByRow {
    /// None: the "other" row of the syscall (pairs that found no room, or were not shown).
    id: Option<u64>,
    nr: u32,
    interval: Log2Hist,
    total: u64,
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
            by: Deltas::default(),
        }
    }

    /// The breakdown of this interval: every pair with calls, grouped by key (busiest key
    /// first), then per syscall an "other" row with what the pairs do not hold.
    fn by_since_last(&mut self, hist: &Hist, totals: &[Row]) -> Result<Vec<ByRow>> {
        let mut rows: Vec<ByRow> = tracer::read_by(hist)?
            .into_iter()
            .map(|(id, nr, now)| ByRow {
                id: Some(id),
                nr,
                interval: self.by.step(&(id, nr), &now),
                total: now.count,
            })
            .filter(|r| r.interval.count > 0)
            .collect();
        let mut per_key: HashMap<u64, u64> = HashMap::new();
        let mut listed: HashMap<u32, Log2Hist> = HashMap::new();
        for r in &rows {
            *per_key.entry(r.id.unwrap_or(0)).or_default() += r.interval.count;
            listed.entry(r.nr).or_default().add(&r.interval);
        }
        rows.sort_by(|a, b| {
            let (ka, kb) = (a.id.unwrap_or(0), b.id.unwrap_or(0));
            per_key[&kb]
                .cmp(&per_key[&ka])
                .then(ka.cmp(&kb))
                .then(b.interval.count.cmp(&a.interval.count))
                .then(a.nr.cmp(&b.nr))
        });
        for t in totals {
            let rest = t
                .interval
                .since(listed.get(&t.nr).unwrap_or(&Log2Hist::default()));
            if rest.count > 0 {
                rows.push(ByRow {
                    id: None,
                    nr: t.nr,
                    interval: rest,
                    total: 0,
                });
            }
        }
        Ok(rows)
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

fn print_hists(
    out: &mut Output,
    rows: &[Row],
    top: Option<usize>,
    mark: Option<&Period>,
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
            if let Value::Object(m) = &mut rec {
                h.percentile_fields(m);
            }
            if let Some(m) = mark {
                rec["interval"] = m.number.into();
            }
            out.record(&rec)?;
        } else {
            print_text(out, &format!("@{name}"), h)?;
        }
    }
    if !out.json && rows.is_empty() {
        out.line("(no syscalls completed)")?;
    }
    Ok(())
}

/// One histogram in text: its line (calls, average, total, percentiles), then its buckets.
fn print_text(out: &mut Output, label: &str, h: &Log2Hist) -> Result<()> {
    for row in h.text_block(label) {
        out.line(&row)?;
    }
    out.line("")?;
    Ok(())
}

/// Who a breakdown key is: JSON fields and a text label.
struct Keys {
    by: By,
    pids: PidView,
    cgroups: CgroupNames,
}

impl Keys {
    fn describe(&mut self, hist: &Hist, id: Option<u64>) -> (Map<String, Value>, String) {
        let mut m = Map::new();
        m.insert(
            "by".into(),
            match self.by {
                By::Process => "process",
                By::Thread => "thread",
                _ => "cgroup",
            }
            .into(),
        );
        let Some(id) = id else {
            m.insert("other".into(), true.into());
            return (m, "other".into());
        };
        match self.by {
            By::Process | By::Thread => {
                let field = if self.by == By::Process { "pid" } else { "tid" };
                let ns = self.pids.to_ns(id as u32);
                let comm = tracer::by_name(hist, id);
                m.insert(field.into(), ns.into());
                if self.pids.translates() {
                    m.insert(format!("host_{field}"), id.into());
                }
                m.insert("comm".into(), comm.clone().into());
                let shown = ns.map_or_else(|| format!("host {id}"), |p| p.to_string());
                let comm = comm.map_or_else(
                    || "?".into(),
                    |c| crate::model::bytes::escape_text(&c).into_owned(),
                );
                (m, format!("{comm} {shown}"))
            }
            _ => {
                let path = self.cgroups.path(id).map(str::to_string);
                m.insert("cgroup".into(), path.clone().into());
                m.insert("cgroup_id".into(), id.into());
                let shown = path.map_or_else(
                    || format!("cgroup {id}"),
                    |p| crate::model::bytes::escape_text(&p).into_owned(),
                );
                (m, shown)
            }
        }
    }
}

fn print_by(
    out: &mut Output,
    hist: &Hist,
    keys: &mut Keys,
    rows: &[ByRow],
    shown: &[u32],
    mark: Option<&Period>,
) -> Result<()> {
    for r in rows.iter().filter(|r| shown.contains(&r.nr)) {
        let name = syscalls::name(r.nr);
        let (who, label) = keys.describe(hist, r.id);
        let h = &r.interval;
        if out.json {
            let mut rec = Map::new();
            rec.insert("type".into(), "hist_by".into());
            rec.extend(who);
            rec.insert("syscall".into(), name.into());
            rec.insert("nr".into(), r.nr.into());
            rec.insert("unit".into(), "us".into());
            rec.insert("count".into(), h.count.into());
            if r.id.is_some() {
                rec.insert("total".into(), r.total.into());
            }
            rec.insert("sum_ns".into(), h.sum_ns.into());
            rec.insert("buckets".into(), h.json_buckets());
            h.percentile_fields(&mut rec);
            if let Some(m) = mark {
                rec.insert("interval".into(), m.number.into());
            }
            out.record(&Value::Object(rec))?;
        } else {
            print_text(out, &format!("@{name} [{label}]"), h)?;
        }
    }
    Ok(())
}

pub fn run(args: HistArgs, sink: &OutputArgs) -> Result<i32> {
    let checked = Checked::system()?;
    let syscalls = args
        .syscalls
        .as_deref()
        .map(syscalls::parse_list)
        .transpose()?;
    let outcome = match (&args.errno, args.errors) {
        (Some(e), _) => Outcome::Errno(errno::parse(e)?),
        (None, true) => Outcome::Errors,
        (None, false) => Outcome::All,
    };
    let session = checked.start(&args.common.trace, sink, args.common.interval.interval)?;
    let by = args.by.unwrap_or_default();
    let cfg = Config {
        scope: Scope::new(session.tgid(), &args.common.scope)?,
        syscalls,
        max_threads: args.max_threads,
        count_processes: false,
        by,
        max_keys: args.max_keys,
        outcome,
    };
    let mut keys = Keys {
        by,
        pids: PidView::new()?,
        cgroups: CgroupNames::new(),
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
    let mut reader = Reader::new(&cfg);
    // Every interval is printed, an empty one too (its record says so).
    let report = |out: &mut Output, mark: Option<&Period>| -> Result<()> {
        let rows = reader.since_last(&hist)?;
        let by_rows = if by != By::Nothing {
            reader.by_since_last(&hist, &rows)?
        } else {
            Vec::new()
        };
        print_hists(out, &rows, args.top, mark)?;
        if by != By::Nothing {
            let shown: Vec<u32> = rows
                .iter()
                .take(args.top.unwrap_or(usize::MAX))
                .map(|r| r.nr)
                .collect();
            if !out.json && !by_rows.is_empty() {
                out.line(&format!(
                    "--- by {} ---",
                    keys.describe(&hist, None).0["by"].as_str().unwrap_or("")
                ))?;
            }
            print_by(out, &hist, &mut keys, &by_rows, &shown, mark)?;
        }
        Ok(())
    };
    let hook = way.hook.to_string();
    let desc = Aggregation {
        tracing: "syscalls",
        what: match outcome {
            Outcome::All => "syscalls",
            _ => "failed syscalls",
        },
        hook: &hook,
    };
    run::aggregate(session, desc, report)?.close(Ending::new(
        tracer::losses(&hist)?,
        json!({ "store": way.store.to_string() }),
    ))
}
