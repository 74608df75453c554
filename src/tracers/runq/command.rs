// SPDX-License-Identifier: Apache-2.0
//! `btrace runqlat`: run-queue latency, how long runnable tasks waited for a CPU, as log2
//! histograms kept in the kernel; whole, or per process or per cgroup.

use anyhow::Result;
use clap::Args;
use serde_json::{json, Map, Value};

use crate::core::attach::TaskWay;
use crate::core::output::{Output, OutputArgs};
use crate::core::pidns::PidView;
use crate::core::run::{self, AggregateArgs, Aggregation, Checked, Ending, Period};
use crate::core::scope::Scope;
use crate::model::delta::Deltas;
use crate::model::units::fmt_ns;
use crate::resolve::cgroups::CgroupNames;

use super::skel::Runq;
use super::tracer::{self, By, RunqStat};

#[derive(Args, Debug, Clone)]
pub struct RunqlatArgs {
    #[command(flatten)]
    pub common: AggregateArgs,
    /// A histogram per process (of the task that waited), named as it was when it waited:
    /// one row per name for a process that execs
    #[arg(long, conflicts_with = "per_cgroup")]
    pub per_process: bool,
    /// A histogram per cgroup v2 (of the task that waited)
    #[arg(long)]
    pub per_cgroup: bool,
    /// Show only the N processes or cgroups that waited most often (the rest are summed
    /// in an "other" row)
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Use only this hook, no fallback (default: tp_btf with task storage, else raw_tp)
    #[arg(long, value_enum)]
    pub hook: Option<TaskWay>,
}

fn stat_fields(s: &RunqStat, total: u64, rec: &mut Map<String, Value>) {
    rec.insert("unit".into(), "us".into());
    rec.insert("count".into(), s.lat.count.into());
    rec.insert("total".into(), total.into());
    rec.insert("sum_ns".into(), s.lat.sum_ns.into());
    rec.insert("wakeups".into(), s.wakeups.into());
    rec.insert("preemptions".into(), s.preemptions.into());
    rec.insert("woken".into(), s.woken.into());
    rec.insert("buckets".into(), s.lat.json_buckets());
    s.lat.percentile_fields(rec);
}

fn stat_line(label: &str, s: &RunqStat) -> String {
    format!(
        "@{label}: {} wait{} ({} after a wakeup, {} after a preemption), {} woken, avg {}{}   (buckets: latency in us)",
        s.lat.count,
        if s.lat.count == 1 { "" } else { "s" },
        s.wakeups,
        s.preemptions,
        s.woken,
        fmt_ns(s.lat.avg_ns().unwrap_or(0.0)),
        if s.lat.count > 0 {
            format!(", {}", s.lat.percentile_text())
        } else {
            String::new()
        },
    )
}

struct Printer {
    by: By,
    top: Option<usize>,
    total: Deltas<(), RunqStat>,
    keys: Deltas<u64, RunqStat>,
    pids: PidView,
    cgroups: CgroupNames,
}

impl Printer {
    fn print(&mut self, out: &mut Output, runq: &Runq, period: Option<&Period>) -> Result<()> {
        let interval = period.map(|p| p.number);
        let now = tracer::read_stat(runq)?;
        let all = self.total.step(&(), &now);
        if let (Some(n), false) = (interval, out.json) {
            out.line(&format!("--- interval {n} ---"))?;
        }
        let mut head = Map::new();
        head.insert("type".into(), "runq".into());
        head.insert("key".into(), "all".into());
        stat_fields(&all, now.lat.count, &mut head);
        if let Some(n) = interval {
            head.insert("interval".into(), n.into());
        }
        if out.json {
            out.record(&Value::Object(head))?;
        } else {
            out.line(&stat_line("all", &all))?;
            for row in all.lat.render(40) {
                out.line(&row)?;
            }
            out.line("")?;
        }
        if self.by == By::Nothing {
            return Ok(());
        }
        let mut rows: Vec<(u64, RunqStat, u64)> = tracer::read_keys(runq)?
            .into_iter()
            .map(|(k, now)| (k, self.keys.step(&k, &now), now.lat.count))
            .filter(|(_, d, _)| d.lat.count > 0)
            .collect();
        rows.sort_by(|a, b| b.1.lat.count.cmp(&a.1.lat.count).then(a.0.cmp(&b.0)));
        let shown = self.top.unwrap_or(usize::MAX).min(rows.len());
        // What the listed rows do not hold: keys beyond the kernel's table, and those
        // left out by --top. The rows and "other" add up to the total.
        let mut listed = RunqStat::default();
        for (_, s, _) in &rows[..shown] {
            listed.add(s);
        }
        let other = all.minus(&listed);
        for (k, s, total) in &rows[..shown] {
            let mut rec = Map::new();
            rec.insert("type".into(), "runq".into());
            let label = match self.by {
                By::Process => {
                    // The key: the host tgid, and a hash of the name it waited under.
                    let host = tracer::key_tgid(*k);
                    let pid = self.pids.to_ns(host);
                    let comm = tracer::process_name(runq, *k);
                    rec.insert("key".into(), "process".into());
                    rec.insert("pid".into(), pid.into());
                    if self.pids.translates() {
                        rec.insert("host_pid".into(), host.into());
                    }
                    rec.insert("comm".into(), comm.clone().into());
                    format!(
                        "{} [{}]",
                        comm.map_or_else(
                            || "?".into(),
                            |c| crate::model::bytes::escape_text(&c).into_owned()
                        ),
                        pid.map_or_else(|| format!("host {host}"), |p| p.to_string())
                    )
                }
                _ => {
                    let path = self.cgroups.path(*k).map(str::to_string);
                    rec.insert("key".into(), "cgroup".into());
                    rec.insert("cgroup".into(), path.clone().into());
                    rec.insert("cgroup_id".into(), (*k).into());
                    path.map_or_else(
                        || format!("cgroup {k}"),
                        |p| crate::model::bytes::escape_text(&p).into_owned(),
                    )
                }
            };
            stat_fields(s, *total, &mut rec);
            if let Some(n) = interval {
                rec.insert("interval".into(), n.into());
            }
            if out.json {
                out.record(&Value::Object(rec))?;
            } else {
                out.line(&stat_line(&label, s))?;
                for row in s.lat.render(40) {
                    out.line(&row)?;
                }
                out.line("")?;
            }
        }
        if other.lat.count > 0 {
            if out.json {
                let mut rec = Map::new();
                rec.insert("type".into(), "runq".into());
                rec.insert("key".into(), "other".into());
                // A remainder has no "total since start" of its own.
                stat_fields(&other, other.lat.count, &mut rec);
                rec.remove("total");
                if let Some(n) = interval {
                    rec.insert("interval".into(), n.into());
                }
                out.record(&Value::Object(rec))?;
            } else {
                out.line(&stat_line("other (not listed)", &other))?;
                out.line("")?;
            }
        }
        Ok(())
    }
}

pub fn run(args: RunqlatArgs, sink: &OutputArgs) -> Result<i32> {
    let session =
        Checked::system()?.start(&args.common.trace, sink, args.common.interval.interval)?;
    let scope = Scope::new(session.tgid(), &args.common.scope)?;
    let by = match (args.per_process, args.per_cgroup) {
        (true, _) => By::Process,
        (_, true) => By::Cgroup,
        _ => By::Nothing,
    };
    let mut ways = TaskWay::ALL.to_vec();
    ways.retain(|w| args.hook.is_none_or(|want| *w == want));
    let (way, runq, _links) = tracer::load_first(&ways, &scope, None, by, None)?;
    let mut printer = Printer {
        by,
        top: args.top,
        total: Deltas::default(),
        keys: Deltas::default(),
        pids: PidView::new()?,
        cgroups: CgroupNames::new(),
    };
    let what = "run-queue latency";
    let desc = Aggregation::new(what, way.hook());
    run::aggregate(
        session,
        desc,
        |out: &mut Output, period: Option<&Period>| printer.print(out, &runq, period),
    )?
    .close(Ending::new(
        tracer::losses(&runq)?,
        json!({ "store": way.store() }),
    ))
}
