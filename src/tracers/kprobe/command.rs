// SPDX-License-Identifier: Apache-2.0
//! `btrace kprobe [FUNC]`: every call of a kernel function as an event, its arguments
//! named and typed from the kernel's BTF; with `--ret`, the return value and latency.

use anyhow::{anyhow, bail, Result};
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::{json, Value};

use crate::core::attach;
use crate::core::event_out::{HeadArgs, Heads};
use crate::core::output::Output;
use crate::core::scope::{Scope, ScopeArgs};
use crate::core::session::{Closing, Session, TraceArgs};
use crate::core::slots::StringArgs;
use crate::core::stacks::{EventStackArgs, EventStacks};
use crate::core::stream::{pump, EventStream};
use crate::model::units::fmt_latency;
use crate::model::value::{json_args, Marks};

use super::tracer::{
    decode_args, decode_record, decode_ret, kernel_cannot, load, modes, parse_max_inflight,
    resolve, ModeArg, Plan, DEFAULT_MAX_INFLIGHT,
};

#[derive(Args, Debug, Clone)]
pub struct KprobeArgs {
    /// The kernel function to trace
    #[arg(value_name = "FUNC", default_value = "do_sys_openat2")]
    pub func: String,
    /// How to hook the function: fentry where the kernel allows it, else kprobe (auto),
    /// or only one of them
    #[arg(long = "hook", visible_alias = "mode", value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
    /// Also report the return value and the latency (fexit or kretprobe)
    #[arg(long)]
    pub ret: bool,
    /// With --ret: bound of the per-thread store of calls in progress
    #[arg(long, value_name = "N", value_parser = parse_max_inflight)]
    pub max_inflight: Option<u32>,
    #[command(flatten)]
    pub strings: StringArgs,
    #[command(flatten)]
    pub stack: EventStackArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub heads: HeadArgs,
    #[command(flatten)]
    pub common: TraceArgs,
}

pub fn run(args: KprobeArgs) -> Result<i32> {
    let c = &args.common;
    if args.max_inflight.is_some() && !args.ret {
        bail!("--max-inflight bounds the calls waiting for their return: it needs --ret");
    }
    crate::core::system::preflight()?;
    let proto = resolve(&args.func)?;
    if let Some(line) = kernel_cannot(args.mode) {
        bail!("{line}");
    }
    let mut session = Session::new(c, None)?;
    let mut plan = Plan::new(
        &args.func,
        proto,
        args.ret,
        args.max_inflight.unwrap_or(DEFAULT_MAX_INFLIGHT),
        Scope::new(session.tgid(), &args.scope)?,
        args.strings.string_size,
    );
    plan.stack = args.stack.stack;
    let mut stacks = args.stack.stack.then(EventStacks::new);
    let (mode, (kp, _links)) = attach::first_that_works(&modes(args.mode, &plan.func), |m| load(m, &plan))
        .map_err(|e| {
            anyhow!(
                "cannot trace kernel function '{}': {e:#}; `btrace doctor` shows what this kernel allows",
                plan.func
            )
        })?;

    let mut stream = EventStream::new(&kp.maps.events, decode_record)?;
    let mut out = Output::to(c.json, c.output.as_deref())?;
    let mut heads = Heads::new(&args.heads);
    if !out.json {
        out.line(&heads.text_header("FUNCTION"))?;
        out.flush()?;
    }
    let start_ns = crate::core::system::monotonic_ns();
    session.attached(&format!("{} via {mode}", plan.func))?;
    let (end, events, lost) = pump(
        &mut session,
        &mut stream,
        &mut out,
        &kp.maps.losses,
        kp.object(),
        |out, ev| {
            let fields = decode_args(&plan, &ev);
            let ret = plan.with_ret.then(|| decode_ret(&plan, &ev)).flatten();
            let sides = match (&mut stacks, plan.stack_off()) {
                (Some(es), Some(off)) => es.event(&ev.rec, off, &ev.head),
                _ => None,
            };
            if out.json {
                let mut rec = heads.json(&ev.head);
                rec.insert("func".into(), plan.func.clone().into());
                rec.insert("hook".into(), mode.to_string().into());
                let mut marks = Marks::default();
                rec.insert("args".into(), Value::Object(json_args(&fields, &mut marks)));
                if let Some(r) = &ret {
                    rec.insert("ret".into(), r.val.json(r.name, &mut marks));
                    if let Some(raw) = &r.raw {
                        marks
                            .raw
                            .insert(r.name.into(), raw.json(r.name, &mut Marks::default()));
                    }
                }
                if plan.with_ret {
                    rec.insert("latency_ns".into(), ev.latency_ns.into());
                }
                marks.insert_into(&mut rec);
                if let Some(sides) = &sides {
                    EventStacks::insert_json(&mut rec, sides);
                }
                out.record(&Value::Object(rec))?;
            } else {
                let mut tail = String::new();
                if let Some(r) = &ret {
                    tail = format!("ret={} ", r.val.text());
                }
                if plan.with_ret {
                    tail.push_str(&format!("lat={}", fmt_latency(ev.latency_ns)));
                }
                out.line(&heads.text_line(&ev.head, start_ns, &plan.func, &fields, &tail))?;
                if let Some(sides) = &sides {
                    for l in EventStacks::text_lines(sides) {
                        out.line(&l)?;
                    }
                }
            }
            Ok(true)
        },
    )?;
    let mut specific = json!({ "func": plan.func });
    if let Some(es) = &stacks {
        let sl = es.losses(&kp.maps.stack_losses)?;
        if out.json {
            specific["stack_losses"] = sl.json();
        } else {
            out.line(&sl.text())?;
        }
    }
    session.finish(
        &mut out,
        end,
        Closing {
            what: &plan.func,
            hook: &mode.to_string(),
            counted: Some(("events", events)),
            losses: lost,
            specific,
        },
    )
}
