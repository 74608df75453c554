// SPDX-License-Identifier: Apache-2.0
//! `btrace usdt TARGET:PROVIDER:NAME`: every hit of a USDT probe as an event, its
//! arguments decoded by libbpf from the probe's note (sized and signed as the note says);
//! `btrace usdt TARGET --list`: the probes a file carries.

use anyhow::{anyhow, bail, Result};
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::json;

use crate::core::output::OutputArgs;
use crate::core::run::{Checked, EventArgs};
use crate::core::scope::Scope;
use crate::core::stacks::EventStackArgs;
use crate::resolve::btf::{Arg, Proto, ValueKind};
use crate::resolve::elf::{self, ElfFile};
use crate::resolve::usdt::{self, UsdtProbe};
use crate::tracers::func::{self, Plan, Run, FUNC_MAX_ARGS};

use super::tracer::{load, Probe};

#[derive(Args, Debug, Clone)]
pub struct UsdtArgs {
    #[command(flatten)]
    pub common: EventArgs,
    /// TARGET:PROVIDER:NAME (TARGET a path, a library or a program on PATH), or with
    /// --list only TARGET
    #[arg(value_name = "TARGET:PROVIDER:NAME")]
    pub probe: String,
    /// List the USDT probes of TARGET and exit
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub stack: EventStackArgs,
}

fn list(args: &UsdtArgs, sink: &OutputArgs) -> Result<i32> {
    let path = elf::find_target(&args.probe, args.common.trace.pid)?;
    crate::core::output::input(&path, "the probed file")?;
    let probes = usdt::probes(&ElfFile::open(&path)?);
    let mut out = sink.sink()?;
    for p in &probes {
        if out.json {
            out.record(&json!({"type": "usdt", "target": path.to_string_lossy(),
                "provider": p.provider, "name": p.name, "addr": p.addr,
                "semaphore": p.semaphore, "args": p.args}))?;
        } else {
            out.line(&format!(
                "{}:{}:{}  ({} argument{}: {})",
                args.probe,
                p.provider,
                p.name,
                p.args.len(),
                if p.args.len() == 1 { "" } else { "s" },
                p.args.join(" ")
            ))?;
        }
    }
    if !out.json && probes.is_empty() {
        out.line(&format!("(no USDT probes in {})", path.display()))?;
    }
    out.flush()?;
    Ok(0)
}

/// The probe's arguments as the note types them: arg0.. signed or not, of their size.
fn proto(p: &UsdtProbe) -> Proto {
    Proto {
        func: format!("{}:{}", p.provider, p.name),
        args: p
            .arg_types()
            .into_iter()
            .take(FUNC_MAX_ARGS)
            .enumerate()
            .map(|(i, (signed, width))| Arg {
                name: format!("arg{i}"),
                kind: ValueKind::Int {
                    signed,
                    // libbpf extends each value to 64 bits by its signedness.
                    width: if signed { 8 } else { width },
                },
            })
            .collect(),
        ret: ValueKind::Void,
    }
}

pub fn run(args: UsdtArgs, sink: &OutputArgs) -> Result<i32> {
    if args.list {
        return list(&args, sink);
    }
    let c = &args.common.trace;
    let mut parts = args.probe.rsplitn(3, ':');
    let (Some(name), Some(provider), Some(target)) = (parts.next(), parts.next(), parts.next())
    else {
        bail!(
            "'{}' is not TARGET:PROVIDER:NAME (btrace usdt TARGET --list shows them)",
            args.probe
        );
    };
    let checked = Checked::system()?;
    let path = elf::find_target(target, c.pid)?;
    crate::core::output::input(&path, "the probed file")?;
    let file = ElfFile::open(&path)?;
    let probes = usdt::probes(&file);
    let Some(found) = probes
        .iter()
        .find(|p| p.provider == provider && p.name == name)
    else {
        bail!(
            "no USDT probe {provider}:{name} in {} ({} probes; btrace usdt {target} --list shows them)",
            path.display(),
            probes.len()
        );
    };
    let session = checked.start(c, sink, None)?;
    let mut plan = Plan::new(
        &format!("{provider}:{name}"),
        Some(proto(found)),
        false,
        1,
        Scope::new(session.tgid(), &args.common.scope)?,
        crate::model::abi::STR_SIZE_MIN,
    );
    plan.stack = args.stack.stack;
    plan.ring_bytes = args.common.ring.bytes();
    plan.check_ring()?;
    let probe = Probe::Usdt {
        path: &path,
        provider,
        name,
        pid: c.pid.map_or(-1, |p| p as i32),
    };
    let (skel, _links, _) = load(&plan, &probe).map_err(|e| crate::core::kmem::unless_too_big(e, |e| {
        // libbpf finds a probe's spec by its BPF cookie (Linux 5.15+); without cookies it
        // goes by absolute address, which in a position-independent file only a given
        // running process has.
        let hint = if format!("{e:#}").contains("os error 95") && c.pid.is_none() {
            "; this kernel has no BPF cookies (Linux 5.15+), so libbpf attaches USDT probes of a shared library or PIE program only to one running process: use -p PID"
        } else {
            ""
        };
        anyhow!(
            "cannot attach to USDT probe {provider}:{name} of {}: {e:#}{hint}",
            path.display()
        )
    }))?;
    let target_path = path.to_string_lossy().into_owned();
    let run = Run {
        plan: &plan,
        what: &args.probe,
        hook: "usdt",
        extra: vec![("target", target_path.clone().into())],
        specific: json!({ "probe": args.probe, "target": target_path }),
        kernel_stack: false,
    };
    let maps = func::run_maps!(skel);
    func::stream_events(session, &args.common.heads, &run, &maps)
}
