// SPDX-License-Identifier: Apache-2.0
//! A function tracer's run: streaming its events, or printing its `--hist` histogram.

use anyhow::Result;
use libbpf_rs::MapCore;
use serde_json::{json, Value};

use super::count::CountArgs;
use super::decode::{decode_args, decode_record, decode_ret, read_latency};
use super::plan::{check_flags, Plan};
use crate::core::event_out::{HeadArgs, Heads};
use crate::core::output::Output;
use crate::core::run::{self, Aggregation, Ending, Events, Period, Report};
use crate::core::scope::Scope;
use crate::core::session::IntervalArgs;
use crate::core::session::Session;
use crate::core::slots::StringArgs;
use crate::core::stacks::{EventStackArgs, EventStacks};
use crate::core::stream::{EventStream, LossWatch};
use crate::model::histogram::Log2Hist;
use crate::model::json_write as jw;
use crate::model::units::fmt_latency;
use crate::model::value::{write_json_args, JsonMarks};
use crate::resolve::btf::Proto;
use crate::tracers::kprobe::tracer::{parse_max_inflight, DEFAULT_MAX_INFLIGHT};

/// The flags kprobe and uprobe share beside `--ret` (whose help names each one's hooks):
/// what a call is reported as (an event, `--hist`, `--count`), `-i`, the store's bound,
/// strings and stacks.
#[derive(clap::Args, Debug, Clone)]
pub struct CallArgs {
    /// A latency histogram of the function kept in the kernel (no event per call)
    #[arg(long, conflicts_with = "ret")]
    pub hist: bool,
    #[command(flatten)]
    pub count: CountArgs,
    #[command(flatten)]
    pub interval: IntervalArgs,
    /// With --ret or --hist: bound of the per-thread store of calls in progress
    #[arg(long, value_name = "N", value_parser = parse_max_inflight)]
    pub max_inflight: Option<u32>,
    #[command(flatten)]
    pub strings: StringArgs,
    #[command(flatten)]
    pub stack: EventStackArgs,
}

impl CallArgs {
    /// The flags that do not go together, for `func` (a glob needs --count) with or
    /// without `--ret`.
    pub fn check(&self, func: &str, ret: bool) -> Result<()> {
        self.count
            .check(func, self.max_inflight, self.stack.stack)?;
        if self.count.count {
            return Ok(());
        }
        check_flags(
            ret,
            self.hist,
            self.stack.stack,
            self.max_inflight,
            &self.interval,
        )
    }

    /// The plan of an event or `--hist` run of `func`, in `scope`, with a ring buffer of
    /// `ring_bytes`.
    pub fn plan(
        &self,
        func: &str,
        proto: Option<Proto>,
        ret: bool,
        scope: Scope,
        ring_bytes: u32,
    ) -> Result<Plan> {
        let mut plan = Plan::new(
            func,
            proto,
            ret,
            self.max_inflight.unwrap_or(DEFAULT_MAX_INFLIGHT),
            scope,
            self.strings.string_size,
        );
        plan.hist = self.hist;
        plan.stack = self.stack.stack;
        plan.ring_bytes = ring_bytes;
        plan.check_ring()?;
        Ok(plan)
    }
}

/// What a function tracer's run prints and closes with.
pub struct Run<'a> {
    pub plan: &'a Plan,
    /// The function (or probe) as shown: `do_sys_openat2`, `libc:malloc`.
    pub what: &'a str,
    /// The hook it attached with (`fentry`, `uprobe`, `usdt`).
    pub hook: &'a str,
    /// Fields every event record carries after `func` and `hook` (e.g. the target file).
    pub extra: Vec<(&'static str, Value)>,
    /// The closing record's own fields.
    pub specific: Value,
    /// --stack has a kernel side (false for probes that fire in user mode: uprobe and
    /// usdt events carry only `user_stack`).
    pub kernel_stack: bool,
}

/// The loaded object and the maps a run reads.
pub struct RunMaps<'a> {
    pub events: &'a dyn MapCore,
    pub losses: &'a dyn MapCore,
    pub latency: &'a dyn MapCore,
    /// --stack: the stack walks' losses (stacks.h).
    pub stack_losses: &'a dyn MapCore,
    /// The loaded programs, whose runs the kernel skipped count as `lost.missed`.
    pub object: &'a libbpf_rs::Object,
}

/// The [`RunMaps`] of a loaded skeleton made from func_probe.h (kprobe, uprobe, usdt: the
/// same map names in each).
macro_rules! run_maps {
    ($skel:expr) => {
        $crate::tracers::func::RunMaps {
            events: &$skel.maps.events,
            losses: &$skel.maps.losses,
            latency: &$skel.maps.latency,
            stack_losses: &$skel.maps.stack_losses,
            object: $skel.object(),
        }
    };
}
pub(crate) use run_maps;

/// Streams every call as an event until the session ends, then closes.
pub fn stream_events(
    session: Session,
    heads: &HeadArgs,
    run: &Run<'_>,
    maps: &RunMaps<'_>,
) -> Result<i32> {
    let plan = run.plan;
    let mut stream = EventStream::new(maps.events, decode_record)?;
    let mut heads = Heads::new(heads);
    let header = heads.text_header("FUNCTION");
    let start_ns = crate::core::system::monotonic_ns();
    let mut stacks = plan.stack.then(EventStacks::new);
    let mut marks = JsonMarks::default();
    let events = Events {
        tracing: &format!("{} via {}", run.what, run.hook),
        ..Events::new(run.what, run.hook, &header, maps.losses, maps.object)
    };
    let mut ended = run::stream(session, events, &mut stream, |out, ev| {
        let fields = decode_args(plan, &ev);
        let ret = plan.with_ret.then(|| decode_ret(plan, &ev)).flatten();
        let sides = match (&mut stacks, plan.stack_off()) {
            (Some(es), Some(off)) => es.event(&ev.rec, off, &ev.head.view()),
            _ => None,
        };
        if out.json {
            // Written straight into the output's buffer, no JSON tree built.
            let buf = out.buf();
            heads.write_json(&ev.head.view(), buf);
            jw::next_key(buf, "func");
            jw::str(buf, run.what);
            jw::next_key(buf, "hook");
            jw::str(buf, run.hook);
            for (k, v) in &run.extra {
                jw::next_key(buf, k);
                serde_json::to_writer(&mut *buf, v)?;
            }
            jw::next_key(buf, "args");
            write_json_args(&fields, buf, &mut marks);
            if let Some(r) = &ret {
                jw::next_key(buf, "ret");
                r.val.write_json(buf, r.name, &mut marks);
                if let Some(raw) = &r.raw {
                    marks.add_raw(r.name, raw);
                }
            }
            if plan.with_ret {
                jw::next_key(buf, "latency_ns");
                jw::int(buf, ev.latency_ns);
            }
            marks.write_into(buf);
            if let Some(sides) = &sides {
                // a uprobe fires in user mode: it has no kernel stack to show
                EventStacks::write_json(buf, sides, run.kernel_stack)?;
            }
            buf.push(b'}');
            out.end_line()?;
        } else {
            let mut tail = String::new();
            if let Some(r) = &ret {
                tail = format!("ret={} ", r.val.text());
            }
            if plan.with_ret {
                tail.push_str(&format!("lat={}", fmt_latency(ev.latency_ns)));
            }
            out.line(&heads.text_line(&ev.head, start_ns, run.what, &fields, &tail))?;
            if let Some(sides) = &sides {
                for l in EventStacks::text_lines(sides) {
                    out.line(&l)?;
                }
            }
        }
        Ok(true)
    })?;
    let mut specific = run.specific.clone();
    if let Some(es) = &stacks {
        let sl = es.losses(maps.stack_losses)?;
        if ended.out().json {
            specific["stack_losses"] = sl.json();
        } else {
            ended.out().line(&sl.text())?;
        }
    }
    ended.close(specific)
}

/// Runs `report` as an aggregation (see [`run::aggregate`]), then closes with the
/// losses, said on stderr too in text mode as an event stream says them.
pub(super) fn run_report(
    session: Session,
    desc: Aggregation<'_>,
    maps: &RunMaps<'_>,
    report: impl Report,
    specific: Value,
) -> Result<i32> {
    let mut ended = run::aggregate(session, desc, report)?;
    let losses = LossWatch::default()
        .check(maps.losses, ended.out().json)?
        .with_missed(maps.object)?;
    ended.close(Ending::new(losses, specific))
}

/// `--hist`: the function's latency histogram, kept in the kernel, printed at the end (and
/// every interval with -i) as `hist` prints its histograms.
pub fn print_hists(session: Session, run: &Run<'_>, maps: &RunMaps<'_>) -> Result<i32> {
    let mut last = Log2Hist::default();
    let report = |out: &mut Output, period: Option<&Period>| -> Result<()> {
        let now = read_latency(maps.latency)?;
        let h = now.since(&last);
        if out.json {
            if let Some(p) = period {
                out.record(&json!({"type": "interval", "interval": p.number,
                    "start_s": p.start_s, "end_s": p.end_s, "calls": h.count}))?;
            }
            let mut rec = json!({"type": "hist", "func": run.what, "unit": "us",
                "count": h.count, "total": now.count, "sum_ns": h.sum_ns,
                "buckets": h.json_buckets()});
            if let Some(p) = period {
                rec["interval"] = p.number.into();
            }
            out.record(&rec)?;
        } else {
            if let Some(p) = period {
                out.line(&format!(
                    "--- interval {}: {:.3} s to {:.3} s ---",
                    p.number, p.start_s, p.end_s
                ))?;
            }
            for row in h.text_block(&format!("@{}", run.what)) {
                out.line(&row)?;
            }
            out.line("")?;
        }
        last = now;
        Ok(())
    };
    let desc = Aggregation {
        tracing: &format!("{} via {}", run.what, run.hook),
        what: run.what,
        hook: run.hook,
    };
    run_report(session, desc, maps, report, run.specific.clone())
}
