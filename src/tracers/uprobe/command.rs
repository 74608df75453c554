// SPDX-License-Identifier: Apache-2.0
//! `btrace uprobe TARGET:FUNC`: every call of a user-space function as an event, its
//! arguments named and typed from DWARF (else arg0..arg5 as integers); with `--ret`, the
//! return value and latency; with `--hist`, a latency histogram kept in the kernel.

use anyhow::{anyhow, bail, Result};
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::json;

use crate::core::output::OutputArgs;
use crate::core::run::{Checked, EventArgs};
use crate::core::scope::Scope;
use crate::resolve::btf::{Arg, Proto, ValueKind};
use crate::resolve::elf::{self, ElfFile, Func};
use crate::tracers::func::{self, Plan, Run, FUNC_MAX_ARGS};

use super::tracer::{errno_name, load, load_count, refusal_meaning, resolve, Probe, Refusal};

#[derive(Args, Debug, Clone)]
pub struct UprobeArgs {
    #[command(flatten)]
    pub common: EventArgs,
    /// TARGET:FUNC: TARGET a path, a library (libc, libssl: found as the dynamic linker
    /// finds it, or in the -p process's maps) or a program on PATH; FUNC a symbol
    /// (mangled or demangled), SYMBOL+OFF or an address (0x...)
    #[arg(value_name = "TARGET:FUNC")]
    pub probe: String,
    /// Also report the return value and the latency (uretprobe)
    #[arg(long)]
    pub ret: bool,
    /// Place the probe at FUNC+OFF or 0xADDR without checking that an instruction starts
    /// there: for code btrace cannot decode (no symbol or unwind entry covers it, or it
    /// does not decode), and also where the check says the offset is inside an
    /// instruction. An offset inside an instruction crashes every process running that
    /// code
    #[arg(long)]
    pub unsafe_offset: bool,
    #[command(flatten)]
    pub calls: func::CallArgs,
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

pub fn run(args: UprobeArgs, sink: &OutputArgs) -> Result<i32> {
    let c = &args.common.trace;
    args.calls.check(&args.probe, args.ret)?;
    if args.calls.count.count {
        return run_count(&args, sink);
    }
    let checked = Checked::system()?;
    let target = resolve(&args.probe, c.pid, !args.unsafe_offset)?;
    let session = checked.start(c, sink, args.calls.interval.interval)?;
    let dwarf = target.proto.is_some();
    let proto = target.proto.unwrap_or_else(|| registers(&target.func.name));
    let scope = Scope::new(session.tgid(), &args.common.scope)?;
    let plan = args.calls.plan(
        &target.func.name,
        Some(proto),
        args.ret,
        scope,
        args.common.ring.bytes(),
    )?;
    let probe = Probe::Func {
        path: &target.path,
        offset: target.func.offset,
    };
    let (skel, _links, hook) = load(&plan, &probe).map_err(|e| crate::core::kmem::unless_too_big(e, |e| {
        anyhow!(
            "cannot place a uprobe on {} at offset {:#x}: {e:#}; `btrace doctor` shows what this kernel allows",
            target.path.display(),
            target.func.offset
        )
    }))?;
    let path = target.path.to_string_lossy().into_owned();
    let run = Run {
        plan: &plan,
        what: &args.probe,
        hook: "uprobe",
        extra: vec![("target", path.clone().into())],
        specific: json!({
            "func": args.probe, "target": path, "offset": target.func.offset,
            "dwarf": dwarf, "attach": hook.to_string(),
        }),
        kernel_stack: false,
    };
    let maps = func::run_maps!(skel);
    if plan.hist {
        func::print_hists(session, &run, &maps)
    } else {
        func::stream_events(session, &args.common.heads, &run, &maps)
    }
}

/// The one line naming the functions the kernel refused (the first few) and why.
fn refused_line(refused: &[Refusal], funcs: &[Func], asked: usize) -> String {
    const NAMED: usize = 5;
    let named: Vec<String> = refused
        .iter()
        .take(NAMED)
        .map(|r| {
            let errno = match r.errno {
                None => "no errno".to_string(),
                Some(n) => match errno_name(n) {
                    Some(name) => format!("errno {n}, {name}"),
                    None => format!("errno {n}"),
                },
            };
            format!(
                "{} at {:#x} ({errno}: {})",
                funcs[r.index].name,
                funcs[r.index].offset,
                refusal_meaning(r.errno)
            )
        })
        .collect();
    let more = match refused.len().saturating_sub(NAMED) {
        0 => String::new(),
        n => format!(" and {n} more (listed in --json's summary)"),
    };
    format!(
        "the kernel refused a uprobe on {} of {asked} functions, which are not counted: {}{more}",
        refused.len(),
        named.join(", ")
    )
}

/// `--count`: calls per function (one, or every function a glob matches), counted in the
/// kernel (func::print_counts).
fn run_count(args: &UprobeArgs, sink: &OutputArgs) -> Result<i32> {
    let c = &args.common.trace;
    let checked = Checked::system()?;
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
        vec![file.func_checked(pattern, !args.unsafe_offset)?]
    };
    if funcs.is_empty() {
        bail!("no function of {} matches '{pattern}'", path.display());
    }
    func::check_max_probes(
        pattern,
        funcs.len(),
        &format!("of {}", path.display()),
        args.calls.count.max_probes(),
    )?;
    let session = checked.start(c, sink, args.calls.interval.interval)?;
    let plan = Plan::new(
        pattern,
        None,
        false,
        1,
        Scope::new(session.tgid(), &args.common.scope)?,
        crate::model::abi::STR_SIZE_MIN,
    );
    let (skel, _links, hook, refused) = load_count(&plan, &path, &funcs).map_err(|e| {
        crate::core::kmem::unless_too_big(e, |e| {
            // The counting program reads its BPF cookie: a kernel without the helper
            // (before 5.15) refuses to load it, whatever else it says.
            let cookies = crate::core::features::attach_cookie();
            if !cookies.ok {
                return anyhow!(
                    "cannot count calls on {}: --count tells functions apart by BPF cookie, and {}",
                    path.display(),
                    cookies.detail
                );
            }
            anyhow!("cannot place counting uprobes on {}: {e:#}", path.display())
        })
    })?;
    let refused_json: Vec<serde_json::Value> = refused
        .iter()
        .map(|r| {
            let f = &funcs[r.index];
            json!({
                "func": f.name, "offset": f.offset, "errno": r.errno,
                "meaning": refusal_meaning(r.errno), "error": r.why,
            })
        })
        .collect();
    let mut note = String::new();
    if !refused.is_empty() {
        note = format!(", {} refused by the kernel", refused.len());
        eprintln!(
            "btrace: note: {}",
            refused_line(&refused, &funcs, funcs.len())
        );
    }
    let path = path.to_string_lossy().into_owned();
    let run = func::CountRun {
        what: &args.probe,
        hook: &hook.to_string(),
        functions: funcs.len() - refused.len(),
        note,
        specific: json!({
            "func": args.probe, "target": path, "refused": refused.len(),
            "refused_functions": refused_json,
        }),
    };
    let maps = func::run_maps!(skel);
    let name_of = |k: u64| {
        funcs
            .get(k as usize)
            .map_or_else(|| format!("[cookie {k}]"), |f| f.name.clone())
    };
    func::print_counts(session, &run, &maps, &skel.maps.counts_by_cookie, &name_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_functions_named_with_errno_and_meaning() {
        let funcs: Vec<Func> = (0..8)
            .map(|i| Func {
                name: format!("fn{i}"),
                addr: 0x1000 + i,
                offset: 0x1000 + i,
                plus: 0,
            })
            .collect();
        let refused: Vec<Refusal> = (0..7)
            .map(|i| Refusal {
                index: i,
                errno: Some(if i == 0 { 524 } else { libc::EINVAL }),
                why: "failed".into(),
            })
            .collect();
        let line = refused_line(&refused, &funcs, funcs.len());
        assert!(
            line.starts_with("the kernel refused a uprobe on 7 of 8 functions"),
            "{line}"
        );
        assert!(
            line.contains("fn0 at 0x1000 (errno 524, ENOTSUPP: an instruction uprobes can neither"),
            "{line}"
        );
        assert!(line.contains("fn4 at 0x1004 (errno 22, EINVAL"), "{line}");
        assert!(!line.contains("fn5"), "{line}");
        assert!(
            line.ends_with("and 2 more (listed in --json's summary)"),
            "{line}"
        );
        assert_eq!(refusal_meaning(None), "refused");
    }
}
