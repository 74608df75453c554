// SPDX-License-Identifier: Apache-2.0
//! `btrace kprobe [FUNC]`: every call of a kernel function as an event, its arguments
//! named and typed from the kernel's BTF; with `--ret`, the return value and latency.

use anyhow::{anyhow, bail, Result};
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::json;

use crate::core::attach;
use crate::core::event_out::HeadArgs;
use crate::core::scope::{Scope, ScopeArgs};
use crate::core::session::{IntervalArgs, Session, TraceArgs};
use crate::core::slots::StringArgs;
use crate::core::stacks::EventStackArgs;

use super::tracer::{
    kernel_cannot, load, modes, parse_max_inflight, resolve, ModeArg, DEFAULT_MAX_INFLIGHT,
};
use crate::tracers::func::{self, Plan, Run, RunMaps};

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
    /// A latency histogram of the function kept in the kernel (no event per call)
    #[arg(long, conflicts_with = "ret")]
    pub hist: bool,
    #[command(flatten)]
    pub interval: IntervalArgs,
    /// With --ret or --hist: bound of the per-thread store of calls in progress
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
    func::check_flags(
        args.ret,
        args.hist,
        args.stack.stack,
        args.max_inflight,
        &args.interval,
    )?;
    crate::core::system::preflight()?;
    let proto = resolve(&args.func)?;
    if let Some(line) = kernel_cannot(args.mode) {
        bail!("{line}");
    }
    let mut session = Session::new(c, args.interval.interval)?;
    let mut plan = Plan::new(
        &args.func,
        proto,
        args.ret,
        args.max_inflight.unwrap_or(DEFAULT_MAX_INFLIGHT),
        Scope::new(session.tgid(), &args.scope)?,
        args.strings.string_size,
    );
    plan.hist = args.hist;
    plan.stack = args.stack.stack;
    let (mode, (kp, _links)) = attach::first_that_works(&modes(args.mode, &plan.func), |m| load(m, &plan))
        .map_err(|e| {
            anyhow!(
                "cannot trace kernel function '{}': {e:#}; `btrace doctor` shows what this kernel allows",
                plan.func
            )
        })?;

    let hook = mode.to_string();
    let run = Run {
        plan: &plan,
        what: &plan.func,
        hook: &hook,
        extra: Vec::new(),
        specific: json!({ "func": plan.func }),
        kernel_stack: true,
    };
    let maps = RunMaps {
        events: &kp.maps.events,
        losses: &kp.maps.losses,
        latency: &kp.maps.latency,
        stack_losses: &kp.maps.stack_losses,
        object: kp.object(),
    };
    if plan.hist {
        func::print_hists(&mut session, c, &run, &maps)
    } else {
        func::stream_events(&mut session, c, &args.heads, &run, &maps)
    }
}
