// SPDX-License-Identifier: Apache-2.0
//! `btrace kprobe [FUNC]`: every call of a kernel function as an event, its arguments
//! named and typed from the kernel's BTF; with `--ret`, the return value and latency.

use anyhow::{anyhow, bail, Result};
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::json;

use crate::core::attach;
use crate::core::output::OutputArgs;
use crate::core::run::{Checked, EventArgs};
use crate::core::scope::Scope;

use super::count::{self, CountHook};
use super::tracer::{kernel_cannot, load, modes, resolve, ModeArg};
use crate::tracers::func::{self, Plan, Run};

#[derive(Args, Debug, Clone)]
pub struct KprobeArgs {
    #[command(flatten)]
    pub common: EventArgs,
    /// The kernel function to trace; with --count a glob (`tcp_*`, `vfs_?ead`)
    #[arg(value_name = "FUNC", default_value = "do_sys_openat2")]
    pub func: String,
    /// How to hook the function: fentry where the kernel allows it, else kprobe (auto),
    /// or only one of them. --count: kprobe.multi where the kernel has it, else one
    /// kprobe per function (auto), or always one kprobe per function (kprobe)
    #[arg(long = "hook", visible_alias = "mode", value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
    /// Also report the return value and the latency (fexit or kretprobe)
    #[arg(long)]
    pub ret: bool,
    #[command(flatten)]
    pub calls: func::CallArgs,
}

pub fn run(args: KprobeArgs, sink: &OutputArgs) -> Result<i32> {
    let c = &args.common.trace;
    args.calls.check(&args.func, args.ret)?;
    if args.calls.count.count {
        return run_count(&args, sink);
    }
    let checked = Checked::system()?;
    let proto = resolve(&args.func)?;
    if let Some(line) = kernel_cannot(args.mode) {
        bail!("{line}");
    }
    let session = checked.start(c, sink, args.calls.interval.interval)?;
    let scope = Scope::new(session.tgid(), &args.common.scope)?;
    let plan = args
        .calls
        .plan(&args.func, proto, args.ret, scope, args.common.ring.bytes())?;
    let (mode, (kp, _links)) = attach::first_that_works(&modes(args.mode, &plan.func), |m| load(m, &plan))
        .map_err(|e| crate::core::kmem::unless_too_big(e, |e| {
            anyhow!(
                "cannot trace kernel function '{}': {e:#}; `btrace doctor` shows what this kernel allows",
                plan.func
            )
        }))?;

    let hook = mode.to_string();
    let run = Run {
        plan: &plan,
        what: &plan.func,
        hook: &hook,
        extra: Vec::new(),
        specific: json!({ "func": plan.func }),
        kernel_stack: true,
    };
    let maps = func::run_maps!(kp);
    if plan.hist {
        func::print_hists(session, &run, &maps)
    } else {
        func::stream_events(session, &args.common.heads, &run, &maps)
    }
}

/// `--count`: calls per kernel function (one, or every function a glob matches), counted
/// in the kernel (count.rs, func::print_counts).
fn run_count(args: &KprobeArgs, sink: &OutputArgs) -> Result<i32> {
    let c = &args.common.trace;
    if args.mode == ModeArg::Fentry {
        bail!("--count attaches kprobes (kprobe.multi, or one kprobe per function): fentry would load and attach a program per function; leave out --hook fentry");
    }
    let checked = Checked::system()?;
    if !crate::core::features::kprobes_present() {
        bail!("this kernel has no kprobes (CONFIG_KPROBES is not set), which --count attaches; run `btrace doctor` to see what works here");
    }
    let funcs = count::expand(&args.func)?;
    func::check_max_probes(
        &args.func,
        funcs.names.len(),
        "of the kernel",
        args.calls.count.max_probes(),
    )?;
    let session = checked.start(c, sink, args.calls.interval.interval)?;
    let plan = Plan::new(
        &args.func,
        None,
        false,
        1,
        Scope::new(session.tgid(), &args.common.scope)?,
        crate::model::abi::STR_SIZE_MIN,
    );
    // --hook kprobe: one kprobe per function even where kprobe.multi works.
    let hooks: &[CountHook] = match args.mode {
        ModeArg::Kprobe => &[CountHook::PerFunction],
        _ => &[CountHook::Multi, CountHook::PerFunction],
    };
    let (hook, (kp, _links, refused)) =
        attach::first_that_works(hooks, |h| count::load_count(h, &plan, &funcs)).map_err(|e| {
            crate::core::kmem::unless_too_big(e, |e| {
                anyhow!(
                "cannot count calls of '{}': {e:#}; `btrace doctor` shows what this kernel allows",
                args.func
            )
            })
        })?;
    let note = match &refused.first {
        Some(first) => format!(", {} refused by the kernel, first {first}", refused.count),
        None => String::new(),
    };
    let hook = hook.to_string();
    let run = func::CountRun {
        what: &args.func,
        hook: &hook,
        functions: funcs.names.len() - refused.count,
        note,
        specific: json!({
            "func": args.func, "refused": refused.count, "left_out": funcs.left_out.len(),
        }),
    };
    let maps = func::run_maps!(kp);
    let name_of = |ip: u64| funcs.name_of(ip);
    func::print_counts(session, &run, &maps, &kp.maps.counts, &name_of)
}
