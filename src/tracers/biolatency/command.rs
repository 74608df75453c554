// SPDX-License-Identifier: Apache-2.0
//! `btrace biolatency`: block I/O latency histograms, from a request's issue to its
//! completion, per operation (and per disk with --per-disk), with sizes, errors and, with
//! -Q, the time requests waited in the queue before issue.

use std::collections::HashMap;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Map, Value};

use crate::core::output::{Output, OutputArgs};
use crate::core::run::{self, AggregateArgs, Aggregation, Checked, Ending, Period};
use crate::core::scope::Scope;
use crate::model::delta::Deltas;
use crate::model::histogram::{bucket_bounds, human, Log2Hist};
use crate::model::units::fmt_ns;

use super::skel::BioObj;
use super::tracer::{self, BioStat, Config, Hook, Key, HOOKS};

#[derive(Args, Debug, Clone)]
pub struct BiolatencyArgs {
    #[command(flatten)]
    pub common: AggregateArgs,
    /// A histogram per disk (and operation)
    #[arg(long)]
    pub per_disk: bool,
    /// Also the time requests waited in the queue, from insert to issue (requests the
    /// block layer queued; those issued at once have none)
    #[arg(short = 'Q', long)]
    pub queued: bool,
    /// Bound of the store of requests in flight at once (default 16384)
    #[arg(long, value_name = "N", value_parser = tracer::parse_max_inflight)]
    pub max_inflight: Option<u32>,
    /// Use only this hook, no fallback (default: tp_btf, else raw_tp)
    #[arg(long, value_enum)]
    pub hook: Option<Hook>,
}

/// Names of disks and operations, for output.
struct Names {
    /// Read from the kernel's BTF when first needed (at the first print): parsing the
    /// whole BTF takes a few ms that would otherwise delay the start.
    ops: std::cell::OnceCell<HashMap<u32, String>>,
    disks: HashMap<(u32, u32), String>,
}

impl Names {
    fn op(&self, op: Option<u32>) -> String {
        match op {
            None => "other".into(),
            Some(o) => self
                .ops
                .get_or_init(tracer::op_names)
                .get(&o)
                .cloned()
                .unwrap_or_else(|| format!("op{o}")),
        }
    }

    fn disk(&mut self, obj: &BioObj, dev: (u32, u32)) -> Option<String> {
        if !self.disks.contains_key(&dev) {
            self.disks.extend(tracer::disk_names(obj));
        }
        if let Some(n) = self.disks.get(&dev) {
            return Some(n.clone());
        }
        let n = tracer::sysfs_disk_name(dev.0, dev.1)?;
        self.disks.insert(dev, n.clone());
        Some(n)
    }
}

fn size_text(h: &Log2Hist) -> String {
    h.buckets
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| {
            let (lo, hi) = bucket_bounds(i);
            match hi {
                Some(hi) => format!("[{}, {}) B x{n}", human(lo), human(hi)),
                None => format!("[{}, ...) B x{n}", human(lo)),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn hist_json(h: &Log2Hist) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("count".into(), h.count.into());
    m.insert("sum_ns".into(), h.sum_ns.into());
    m.insert("buckets".into(), h.json_buckets());
    h.percentile_fields(&mut m);
    m
}

struct Printer {
    names: Names,
    deltas: Deltas<Key, BioStat>,
    queued: bool,
}

impl Printer {
    fn print(&mut self, out: &mut Output, obj: &BioObj, period: Option<&Period>) -> Result<()> {
        let interval = period.map(|p| p.number);
        let mut rows: Vec<(Key, BioStat, u64)> = tracer::read(obj)?
            .into_iter()
            .map(|(k, now)| {
                let d = self.deltas.step(&k, &now);
                (k, d, now.lat.count)
            })
            .filter(|(_, d, _)| d.lat.count > 0)
            .collect();
        rows.sort_by(|a, b| b.1.lat.count.cmp(&a.1.lat.count).then(a.0.cmp(&b.0)));
        if let (Some(n), false) = (interval, out.json) {
            out.line(&format!("--- interval {n} ---"))?;
        }
        for (k, s, total) in &rows {
            let op = self.names.op(k.op);
            let disk = k.dev.and_then(|d| self.names.disk(obj, d));
            if out.json {
                let mut rec = Map::new();
                rec.insert("type".into(), "bio".into());
                rec.insert("disk".into(), disk.clone().into());
                rec.insert("dev".into(), k.dev.map(|(a, b)| format!("{a}:{b}")).into());
                rec.insert("op".into(), op.into());
                rec.insert("unit".into(), "us".into());
                rec.append(&mut hist_json(&s.lat));
                rec.insert("total".into(), (*total).into());
                rec.insert("bytes".into(), s.size.sum_ns.into());
                rec.insert("sizes".into(), s.size.json_buckets());
                rec.insert("errors".into(), s.errors.into());
                if self.queued {
                    rec.insert("queue".into(), Value::Object(hist_json(&s.queue)));
                }
                if let Some(n) = interval {
                    rec.insert("interval".into(), n.into());
                }
                out.record(&Value::Object(rec))?;
                continue;
            }
            let who = match (&disk, k.dev) {
                (Some(d), _) => format!("{d} "),
                (None, Some((a, b))) => format!("{a},{b} "),
                (None, None) => String::new(),
            };
            let h = &s.lat;
            out.line(&format!(
                "@{who}{op}: {} request{}, {} B, avg {}, {}, {} error{}   (buckets: latency in us)",
                h.count,
                if h.count == 1 { "" } else { "s" },
                s.size.sum_ns,
                fmt_ns(h.avg_ns().unwrap_or(0.0)),
                h.percentile_text(),
                s.errors,
                if s.errors == 1 { "" } else { "s" },
            ))?;
            for row in h.render(40) {
                out.line(&row)?;
            }
            out.line(&format!("sizes: {}", size_text(&s.size)))?;
            if self.queued {
                let q = &s.queue;
                out.line(&format!(
                    "queued (insert to issue): {} request{}, avg {}{}",
                    q.count,
                    if q.count == 1 { "" } else { "s" },
                    fmt_ns(q.avg_ns().unwrap_or(0.0)),
                    if q.count > 0 {
                        format!(", {}", q.percentile_text())
                    } else {
                        String::new()
                    }
                ))?;
                for row in q.render(40) {
                    out.line(&row)?;
                }
            }
            out.line("")?;
        }
        if !out.json && rows.is_empty() {
            out.line("(no block I/O completed)")?;
        }
        Ok(())
    }
}

pub fn run(args: BiolatencyArgs, sink: &OutputArgs) -> Result<i32> {
    let session =
        Checked::system()?.start(&args.common.trace, sink, args.common.interval.interval)?;
    let cfg = Config {
        scope: Scope::new(session.tgid(), &args.common.scope)?,
        per_disk: args.per_disk,
        queued: args.queued,
        max_inflight: args.max_inflight,
    };
    let mut hooks = HOOKS.to_vec();
    hooks.retain(|h| args.hook.is_none_or(|want| *h == want));
    let (hook, obj, _links) = tracer::load_first(&hooks, &cfg)?;
    let mut printer = Printer {
        names: Names {
            ops: std::cell::OnceCell::new(),
            disks: HashMap::new(),
        },
        deltas: Deltas::default(),
        queued: args.queued,
    };
    let what = "block I/O";
    let hook = hook.to_string();
    let desc = Aggregation::new(what, &hook);
    run::aggregate(
        session,
        desc,
        |out: &mut Output, period: Option<&Period>| printer.print(out, &obj, period),
    )?
    .close(Ending::new(
        tracer::losses(&obj)?,
        json!({ "per_disk": args.per_disk }),
    ))
}
