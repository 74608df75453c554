// SPDX-License-Identifier: Apache-2.0
//! The user-space function tracer: a uprobe (and with `--ret`/`--hist` a uretprobe) at
//! the file offset of a function, or libbpf's USDT attach for a USDT probe; the rest is
//! the shared function tracer (tracers/func.rs, func_probe.h).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::Link;

use crate::resolve::dwarf;
use crate::resolve::elf::{self, ElfFile, Func};
use crate::tracers::func::Plan;
use crate::tracers::Check;

use super::skel::{Uprobe, UprobeSkelBuilder};

/// Where the probe goes.
pub enum Probe<'a> {
    /// A function at a file offset.
    Func { path: &'a Path, offset: u64 },
    /// A USDT probe (libbpf reads the note and decodes the arguments); `pid`: the one
    /// process to attach for (-p), else every process (-1).
    Usdt {
        path: &'a Path,
        provider: &'a str,
        name: &'a str,
        pid: i32,
    },
}

/// A function of a user-space file, as the command resolved it.
pub struct Target {
    pub path: PathBuf,
    pub func: Func,
    /// From DWARF, when the file (or its debug file) carries it.
    pub proto: Option<crate::resolve::btf::Proto>,
}

/// `TARGET:FUNC` into the file, the function's offset and its prototype. `pid`: the
/// traced process (-p), whose maps and root are searched first.
pub fn resolve(spec: &str, pid: Option<u32>) -> Result<Target> {
    let (target, func) = spec.rsplit_once(':').ok_or_else(|| {
        anyhow!("'{spec}' is not TARGET:FUNC (e.g. libc:malloc, /usr/bin/bash:readline)")
    })?;
    if target.is_empty() || func.is_empty() {
        return Err(anyhow!(
            "'{spec}' is not TARGET:FUNC (e.g. libc:malloc, /usr/bin/bash:readline)"
        ));
    }
    let path = elf::find_target(target, pid)?;
    crate::core::output::input(&path, "the probed file")?;
    let file = ElfFile::open(&path)?;
    let f = file.func(func)?;
    // Arguments are known at the entry only: not after FUNC+OFF.
    let proto = if f.plus == 0 {
        dwarf::proto(&file, &f.name, f.addr)
    } else {
        None
    };
    Ok(Target {
        path,
        func: f,
        proto,
    })
}

/// The process a uprobe's perf event is bound to. With a scope of exactly one process
/// (--no-children) only that process traps: others mapping the file (every process, for
/// libc) run on untouched instead of trapping to be filtered out, as bpftrace's -p binds
/// it. Otherwise every process, the kernel filter choosing (-p/-c follow the children).
/// Not from a child pid namespace: the scope holds host ids, perf_event_open takes ours.
fn attach_pid(plan: &Plan) -> i32 {
    match plan.scope.tgid {
        0 => -1,
        _ if crate::core::pidns::in_child_ns() => -1,
        tgid => tgid as i32,
    }
}

/// Opens, configures, loads and attaches.
pub fn load(plan: &Plan, probe: &Probe<'_>) -> Result<(Uprobe, Vec<Link>)> {
    let skel = crate::tracers::func::with_store_fallback(plan, |task_store| {
        Uprobe::new(|storage| {
            let mut open = crate::skel_builder!(UprobeSkelBuilder).open(storage)?;
            crate::func_configure!(open, plan, task_store);
            let usdt = matches!(probe, Probe::Usdt { .. });
            let p = &mut open.progs;
            p.func_uprobe.set_autoload(!usdt);
            p.func_uretprobe.set_autoload(!usdt && plan.needs_return());
            p.func_usdt.set_autoload(usdt);
            // --count's program uses BPF cookies (5.15+): loaded only by load_count.
            p.func_count.set_autoload(false);
            let skel = open.load()?;
            plan.scope
                .install(&skel.maps.scope_cgroups, &skel.maps.scope_cgroup_ids)?;
            Ok(skel)
        })
    })?;
    let mut links = crate::core::scope::attach_tree(skel.object())?;
    // The process of attach_pid, or every process that maps the file; the scope filter
    // in the kernel keeps the traced ones. Entry first: a return seen before its entry's
    // hook would count as a loss.
    let pid = attach_pid(plan);
    match probe {
        Probe::Func { path, offset } => {
            let off = *offset as usize;
            links.push(
                skel.progs
                    .func_uprobe
                    .attach_uprobe(false, pid, path, off)?,
            );
            if plan.needs_return() {
                links.push(
                    skel.progs
                        .func_uretprobe
                        .attach_uprobe(true, pid, path, off)?,
                );
            }
        }
        Probe::Usdt {
            path,
            provider,
            name,
            pid,
        } => {
            links.push(
                skel.progs
                    .func_usdt
                    .attach_usdt(*pid, path, provider, name)?,
            );
        }
    }
    plan.scope.seed(&skel.maps.scope_procs)?;
    Ok((skel, links))
}

/// `--count`: one counting uprobe per function, each with its index as BPF cookie (the
/// slot of `counts_by_cookie` it adds to). Each is an inode-wide breakpoint and a perf
/// event, hence the bound of --max-probes.
pub fn load_count(plan: &Plan, path: &Path, funcs: &[Func]) -> Result<(Uprobe, Vec<Link>)> {
    let skel = Uprobe::new(|storage| {
        let mut open = crate::skel_builder!(UprobeSkelBuilder).open(storage)?;
        crate::func_configure!(open, plan, false);
        open.maps
            .counts_by_cookie
            .set_max_entries(funcs.len().max(1) as u32)?;
        let p = &mut open.progs;
        p.func_uprobe.set_autoload(false);
        p.func_uretprobe.set_autoload(false);
        p.func_usdt.set_autoload(false);
        p.func_count.set_autoload(true);
        let skel = open.load()?;
        plan.scope
            .install(&skel.maps.scope_cgroups, &skel.maps.scope_cgroup_ids)?;
        Ok(skel)
    })?;
    let mut links = crate::core::scope::attach_tree(skel.object())?;
    let pid = attach_pid(plan);
    for (i, f) in funcs.iter().enumerate() {
        let opts = libbpf_rs::UprobeOpts {
            cookie: i as u64,
            ..Default::default()
        };
        let link = skel
            .progs
            .func_count
            .attach_uprobe_with_opts(pid, path, f.offset as usize, opts)
            .map_err(|e| anyhow!("{} at {:#x}: {e}", f.name, f.offset))?;
        links.push(link);
    }
    plan.scope.seed(&skel.maps.scope_procs)?;
    Ok((skel, links))
}

/// Whether uprobes work here, found by attaching one to a function of btrace itself.
pub fn checks() -> Vec<Check> {
    let result = (|| -> Result<String> {
        let exe = std::fs::read_link("/proc/self/exe")?;
        let file = ElfFile::open(&exe)?;
        // The entry point: every executable has one, stripped or not.
        let f = file.func(&format!("{:#x}", object::Object::entry(&file.object())))?;
        let plan = Plan::new(
            "main",
            None,
            false,
            1,
            crate::core::scope::Scope::default(),
            crate::core::abi::STR_SIZE_MIN,
        );
        let probe = Probe::Func {
            path: &exe,
            offset: f.offset,
        };
        load(&plan, &probe)?;
        Ok("uprobe attached".into())
    })();
    vec![Check {
        mode: None,
        result,
        fix: "needs CONFIG_UPROBE_EVENTS and a ring buffer (Linux 5.8+)",
    }]
}
