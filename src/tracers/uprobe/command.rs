// SPDX-License-Identifier: Apache-2.0
//! `btrace uprobe TARGET:FUNC`: every call of a user-space function as an event, its
//! arguments named and typed from DWARF (else arg0..arg5 as integers); with `--ret`, the
//! return value and latency; with `--hist`, a latency histogram kept in the kernel.

use anyhow::{anyhow, bail, Result};
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::json;

use crate::core::event_out::HeadArgs;
use crate::core::scope::{Scope, ScopeArgs};
use crate::core::session::{IntervalArgs, Session, TraceArgs};
use crate::core::slots::StringArgs;
use crate::core::stacks::EventStackArgs;
use crate::core::stream::RingArgs;
use crate::resolve::btf::{Arg, Proto, ValueKind};
use crate::resolve::elf::{self, ElfFile};
use crate::tracers::func::{self, Plan, Run, FUNC_MAX_ARGS};
use crate::tracers::kprobe::tracer::{parse_max_inflight, DEFAULT_MAX_INFLIGHT};

use super::tracer::{load, load_count, resolve, Probe};

#[derive(Args, Debug, Clone)]
pub struct UprobeArgs {
    /// TARGET:FUNC: TARGET a path, a library (libc, libssl: found as the dynamic linker
    /// finds it, or in the -p process's maps) or a program on PATH; FUNC a symbol
    /// (mangled or demangled), SYMBOL+OFF or an address (0x...)
    #[arg(value_name = "TARGET:FUNC")]
    pub probe: String,
    /// Also report the return value and the latency (uretprobe)
    #[arg(long)]
    pub ret: bool,
    /// A latency histogram of the function kept in the kernel (no event per call)
    #[arg(long, conflicts_with = "ret")]
    pub hist: bool,
    #[command(flatten)]
    pub count: func::CountArgs,
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
    pub ring: RingArgs,
    #[command(flatten)]
    pub common: TraceArgs,
}

/// Without DWARF: six integer registers (the x86-64 calling convention's), and an
/// integer return.
fn registers(func: &str) -> Proto {
    Proto {
        func: func.to_string(),
        args: (0..FUNC_MAX_ARGS)
            .map(|i| Arg {
                name: format!("arg{i}"),
                kind: ValueKind::Int {
                    signed: true,
                    width: 8,
                },
            })
            .collect(),
        ret: ValueKind::Int {
            signed: true,
            width: 8,
        },
    }
}

pub fn run(args: UprobeArgs) -> Result<i32> {
    let c = &args.common;
    args.count
        .check(&args.probe, args.max_inflight, args.stack.stack)?;
    if args.count.count {
        return run_count(&args);
    }
    func::check_flags(
        args.ret,
        args.hist,
        args.stack.stack,
        args.max_inflight,
        &args.interval,
    )?;
    crate::core::system::preflight()?;
    let target = resolve(&args.probe, c.pid)?;
    let mut session = Session::new(c, args.interval.interval)?;
    let dwarf = target.proto.is_some();
    let proto = target.proto.unwrap_or_else(|| registers(&target.func.name));
    let mut plan = Plan::new(
        &target.func.name,
        Some(proto),
        args.ret,
        args.max_inflight.unwrap_or(DEFAULT_MAX_INFLIGHT),
        Scope::new(session.tgid(), &args.scope)?,
        args.strings.string_size,
    );
    plan.hist = args.hist;
    plan.stack = args.stack.stack;
    plan.ring_bytes = args.ring.bytes();
    let probe = Probe::Func {
        path: &target.path,
        offset: target.func.offset,
    };
    let (skel, _links) = load(&plan, &probe).map_err(|e| {
        anyhow!(
            "cannot place a uprobe on {} at offset {:#x}: {e:#}; `btrace doctor` shows what this kernel allows",
            target.path.display(),
            target.func.offset
        )
    })?;
    let path = target.path.to_string_lossy().into_owned();
    let run = Run {
        plan: &plan,
        what: &args.probe,
        hook: "uprobe",
        extra: vec![("target", path.clone().into())],
        specific: json!({
            "func": args.probe, "target": path, "offset": target.func.offset,
            "dwarf": dwarf,
        }),
        kernel_stack: false,
    };
    let maps = func::run_maps!(skel);
    if plan.hist {
        func::print_hists(&mut session, c, &run, &maps)
    } else {
        func::stream_events(&mut session, c, &args.heads, &run, &maps)
    }
}

/// `--count`: calls per function (one, or every function a glob matches), counted in the
/// kernel (func::print_counts).
fn run_count(args: &UprobeArgs) -> Result<i32> {
    let c = &args.common;
    crate::core::system::preflight()?;
    let (target, pattern) = args
        .probe
        .rsplit_once(':')
        .filter(|(t, f)| !t.is_empty() && !f.is_empty())
        .ok_or_else(|| anyhow!("'{}' is not TARGET:FUNC (e.g. 'libc:malloc*')", args.probe))?;
    let path = elf::find_target(target, c.pid)?;
    crate::core::output::input(&path, "the probed file")?;
    let file = ElfFile::open(&path)?;
    let funcs = if func::is_glob(pattern) {
        file.glob(pattern)
    } else {
        vec![file.func(pattern)?]
    };
    if funcs.is_empty() {
        bail!("no function of {} matches '{pattern}'", path.display());
    }
    func::check_max_probes(
        pattern,
        funcs.len(),
        &format!("of {}", path.display()),
        args.count.max_probes(),
    )?;
    let mut session = Session::new(c, args.interval.interval)?;
    let plan = Plan::new(
        pattern,
        None,
        false,
        1,
        Scope::new(session.tgid(), &args.scope)?,
        crate::core::abi::STR_SIZE_MIN,
    );
    let (skel, _links) = load_count(&plan, &path, &funcs).map_err(|e| {
        anyhow!(
            "cannot place counting uprobes on {}: {e:#} (--count needs BPF cookies, Linux 5.15+)",
            path.display()
        )
    })?;
    let path = path.to_string_lossy().into_owned();
    let run = func::CountRun {
        what: &args.probe,
        hook: "uprobe",
        functions: funcs.len(),
        note: String::new(),
        specific: json!({ "func": args.probe, "target": path }),
    };
    let maps = func::run_maps!(skel);
    let name_of = |k: u64| {
        funcs
            .get(k as usize)
            .map_or_else(|| format!("[cookie {k}]"), |f| f.name.clone())
    };
    func::print_counts(
        &mut session,
        c,
        &run,
        &maps,
        &skel.maps.counts_by_cookie,
        &name_of,
    )
}
