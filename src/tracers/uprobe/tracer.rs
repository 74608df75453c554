// SPDX-License-Identifier: Apache-2.0
//! The user-space function tracer: a uprobe (and with `--ret`/`--hist` a uretprobe) at
//! the file offset of a function, or libbpf's USDT attach for a USDT probe; the rest is
//! the shared function tracer (tracers/func/, func_probe.h).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use libbpf_rs::skel::OpenSkel;
use libbpf_rs::{Link, ProgramMut, UprobeMultiOpts};

use crate::core::attach::os_error;
use crate::core::attach::{self, Links};
use crate::core::features;
use crate::core::kmem::Driver;
use crate::core::lifecycle::{self, Declaration, Tree};
use crate::core::scope::Scope;

use crate::resolve::dwarf;
use crate::resolve::elf::{self, ElfFile, Func};
use crate::tracers::func::Plan;
use crate::tracers::Check;

use super::skel::{OpenUprobeSkel, Uprobe, UprobeKind, UprobeSkel};

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
/// traced process (-p), whose maps and root are searched first. `check_boundary`: refuse
/// an offset where an instruction is not known to start (false: --unsafe-offset).
pub fn resolve(spec: &str, pid: Option<u32>, check_boundary: bool) -> Result<Target> {
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
    let f = file.func_checked(func, check_boundary)?;
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

/// How uprobes are attached, in the order tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// uprobe_multi links (Linux 6.6+): every address of a file in one link, attached in
    /// one syscall and detached in one; CAP_BPF and CAP_PERFMON suffice.
    Multi,
    /// One perf event per address (every kernel); the kernel's perf uprobe PMU wants
    /// CAP_SYS_ADMIN (perf_uprobe_event_init: 5.8 let CAP_PERFMON in, "perf/core: Fix
    /// perf_uprobe_event_init()", backported to stable kernels, took that back).
    PerfEvent,
}

/// The ways to attach, cheapest first.
pub const HOOKS: [Hook; 2] = [Hook::Multi, Hook::PerfEvent];

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Hook::Multi => "uprobe.multi",
            Hook::PerfEvent => "uprobe",
        })
    }
}

/// Makes a program attachable the way of `hook`: an uprobe_multi link takes only a program
/// loaded with that expected attach type (libbpf does the same for its USDT programs).
fn prepare(p: &mut libbpf_rs::OpenProgramMut<'_>, hook: Hook) {
    if hook == Hook::Multi {
        p.set_attach_type(libbpf_rs::ProgramAttachType::TraceUprobeMulti);
    }
}

/// Attaches `prog` at one file offset of `path`, `ret` for a uretprobe.
fn attach_one(
    prog: &ProgramMut<'_>,
    hook: Hook,
    pid: i32,
    path: &Path,
    offset: u64,
    ret: bool,
) -> Result<Link> {
    Ok(match hook {
        // libbpf takes -1 as every process, as for perf events.
        Hook::Multi => prog.attach_uprobe_multi_with_opts(
            pid,
            path,
            "",
            UprobeMultiOpts {
                offsets: vec![offset as usize],
                retprobe: ret,
                ..Default::default()
            },
        )?,
        Hook::PerfEvent => prog.attach_uprobe(ret, pid, path, offset as usize)?,
    })
}

/// Opens, configures, loads and attaches, each way of [`HOOKS`] in turn; the error of the
/// last says what is missing (see `explain`). USDT probes are attached by libbpf, which
/// uses uprobe_multi links where the kernel has them.
pub fn load(plan: &Plan, probe: &Probe<'_>) -> Result<(Uprobe, Links, Hook)> {
    if let Probe::Usdt { .. } = probe {
        let (skel, links) = load_hook(plan, probe, Hook::PerfEvent)?;
        return Ok((skel, links, Hook::PerfEvent));
    }
    let (hook, (skel, links)) = first_hook(|hook| load_hook(plan, probe, hook))?;
    Ok((skel, links, hook))
}

/// Tries each way of [`HOOKS`] in turn (as core::attach::first_that_works does, but the
/// refusal of the last, perf-event way is explained with what uprobe_multi said:
/// [`explain`]).
fn first_hook<T>(mut attempt: impl FnMut(Hook) -> Result<T>) -> Result<(Hook, T)> {
    let mut multi_error = None;
    for hook in HOOKS {
        match attempt(hook) {
            Ok(loaded) => {
                crate::core::bpf_log::take();
                return Ok((hook, loaded));
            }
            // Refused for its kernel memory: the same on every way; that line alone.
            Err(e) if crate::core::kmem::too_big(&e).is_some() => return Err(e),
            Err(e) if hook == Hook::Multi => multi_error = Some(attach::describe(&e)),
            Err(e) => return Err(explain(e, multi_error.as_deref())),
        }
    }
    unreachable!("HOOKS ends with the perf-event way, whose error is returned")
}

/// One load of the function tracer as core::lifecycle drives it: the plan, the probe,
/// and whether --hist keeps its entry times in task storage.
struct UprobeLoad<'a> {
    plan: &'a Plan,
    probe: &'a Probe<'a>,
    task_store: bool,
}

impl Declaration for UprobeLoad<'_> {
    type Kind = UprobeKind;
    type Way = Hook;
    const DRIVERS: &'static [Driver] = crate::tracers::func::DRIVERS;
    const TREE: Tree = Tree::First;

    fn scope(&self) -> &Scope {
        &self.plan.scope
    }

    fn configure(&self, hook: Hook, open: &mut OpenUprobeSkel<'_>) -> Result<()> {
        let plan = self.plan;
        plan.configure(open.open_object_mut(), self.task_store)?;
        let usdt = matches!(self.probe, Probe::Usdt { .. });
        let p = &mut open.progs;
        p.func_uprobe.set_autoload(!usdt);
        p.func_uretprobe.set_autoload(!usdt && plan.needs_return());
        p.func_usdt.set_autoload(usdt);
        prepare(&mut p.func_uprobe, hook);
        prepare(&mut p.func_uretprobe, hook);
        // --count's program: loaded only by load_count.
        p.func_count.set_autoload(false);
        Ok(())
    }

    // The process of attach_pid, or every process that maps the file; the scope filter
    // in the kernel keeps the traced ones. Entry first: a return seen before its entry's
    // hook would count as a loss.
    fn hooks(&self, hook: Hook, skel: &UprobeSkel<'_>, links: &mut Links) -> Result<()> {
        let plan = self.plan;
        let pid = attach_pid(plan);
        match self.probe {
            Probe::Func { path, offset } => {
                let p = &skel.progs;
                links.push(attach_one(&p.func_uprobe, hook, pid, path, *offset, false)?);
                if plan.needs_return() {
                    links.push(attach_one(
                        &p.func_uretprobe,
                        hook,
                        pid,
                        path,
                        *offset,
                        true,
                    )?);
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
        Ok(())
    }
}

fn load_hook(plan: &Plan, probe: &Probe<'_>, hook: Hook) -> Result<(Uprobe, Links)> {
    let (decl, skel) = crate::tracers::func::with_store_fallback(plan, |task_store| {
        let decl = UprobeLoad {
            plan,
            probe,
            task_store,
        };
        let skel = lifecycle::open_load(&decl, hook)?;
        Ok((decl, skel))
    })?;
    let links = lifecycle::attach(&decl, hook, &skel)?;
    Ok((skel, links))
}

/// The one sentence for a uprobe the kernel refused through perf events (the last way),
/// after uprobe_multi failed with `multi_error`.
fn explain(e: anyhow::Error, multi_error: Option<&str>) -> anyhow::Error {
    let Some(multi_error) = multi_error else {
        return e;
    };
    // Before the feature probe below, which has libbpf log lines of its own.
    let perf_error = attach::describe(&e);
    let multi = features::uprobe_multi();
    let multi = if multi.ok {
        format!("uprobe_multi failed: {multi_error}")
    } else {
        multi.detail
    };
    // Refused at attach (perf_event_open), not at load: the perf uprobe PMU's check.
    let at_attach = perf_error.contains("attach");
    match os_error(&e) {
        Some(errno @ (libc::EACCES | libc::EPERM)) if at_attach => anyhow!(
            "uprobes through perf events need CAP_SYS_ADMIN, which btrace lacks ({}); with CAP_BPF and CAP_PERFMON alone uprobes need uprobe_multi links (Linux 6.6+), and {multi}",
            std::io::Error::from_raw_os_error(errno)
        ),
        _ => anyhow!("{perf_error} ({multi})"),
    }
}

/// A function the kernel would not probe, and why.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Its index in the functions asked for.
    pub index: usize,
    /// The error number, when the error carried one.
    pub errno: Option<i32>,
    /// The error, in words.
    pub why: String,
}

use crate::model::errno::ENOTSUPP;

/// The symbolic name of an errno from placing a uprobe, where it is one of those.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        ENOTSUPP => "ENOTSUPP",
        libc::ENOEXEC => "ENOEXEC",
        libc::EINVAL => "EINVAL",
        libc::EEXIST => "EEXIST",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EBADF => "EBADF",
        _ => return None,
    })
}

/// What an errno from placing a uprobe means.
pub fn refusal_meaning(errno: Option<i32>) -> &'static str {
    match errno {
        Some(ENOTSUPP) => {
            "an instruction uprobes can neither single-step nor emulate (a lock prefix, for one), or a breakpoint already there"
        }
        Some(libc::ENOEXEC) => {
            "bytes that do not decode as an instruction (data, or not an instruction's start)"
        }
        Some(libc::EINVAL) => {
            "an offset the kernel does not take (past the file's end, or not an instruction start)"
        }
        Some(libc::EEXIST) => "a probe already at that address",
        Some(libc::EACCES | libc::EPERM) => "not allowed",
        _ => "refused",
    }
}

/// Consecutive single functions refused, with none accepted yet, after which the
/// refusal is taken as the kernel's for every function (no uprobe_multi, no privilege)
/// rather than searched for function by function.
const GIVE_UP_AFTER: usize = 3;

/// Functions per uprobe_multi link at most. The kernel refuses a link whole when it
/// refuses one address, after placing (in every process mapping the file) and removing
/// the breakpoints before it: a failed link of all of libc's 2153 functions cost about as
/// much as attaching them. Links of this size bound what a refusal wastes.
const MULTI_CHUNK: usize = 256;

/// Attaches counting uprobes at `offsets` (cookie = index) through uprobe_multi links:
/// one link per [`MULTI_CHUNK`] functions, and a link the kernel refuses halved,
/// recursively, until the refused functions stand alone. Fails when the refusals look
/// like the kernel's for every function.
fn attach_multi(
    prog: &ProgramMut<'_>,
    pid: i32,
    path: &Path,
    offsets: &[u64],
) -> Result<(Links, Vec<Refusal>)> {
    struct Search<'a, 'obj> {
        prog: &'a ProgramMut<'obj>,
        pid: i32,
        path: &'a Path,
        offsets: &'a [u64],
        links: Links,
        refused: Vec<Refusal>,
        accepted: bool,
    }
    impl Search<'_, '_> {
        fn attach(&mut self, from: usize, to: usize) -> Result<()> {
            let opts = UprobeMultiOpts {
                offsets: self.offsets[from..to].iter().map(|&o| o as usize).collect(),
                cookies: (from as u64..to as u64).collect(),
                ..Default::default()
            };
            let e = match self
                .prog
                .attach_uprobe_multi_with_opts(self.pid, self.path, "", opts)
            {
                Ok(link) => {
                    self.links.push(link);
                    self.accepted = true;
                    return Ok(());
                }
                Err(e) => anyhow::Error::from(e),
            };
            if to - from > 1 {
                let mid = from + (to - from) / 2;
                self.attach(from, mid)?;
                return self.attach(mid, to);
            }
            if !self.accepted && self.refused.len() + 1 >= GIVE_UP_AFTER.min(self.offsets.len()) {
                return Err(e);
            }
            crate::core::bpf_log::take();
            self.refused.push(Refusal {
                index: from,
                errno: os_error(&e),
                why: format!("{e:#}"),
            });
            Ok(())
        }
    }
    let mut s = Search {
        prog,
        pid,
        path,
        offsets,
        links: Links::default(),
        refused: Vec::new(),
        accepted: false,
    };
    for from in (0..offsets.len()).step_by(MULTI_CHUNK) {
        s.attach(from, (from + MULTI_CHUNK).min(offsets.len()))?;
    }
    Ok((s.links, s.refused))
}

/// Attaches counting uprobes at `offsets` (cookie = index), one perf event each; a
/// refused one is noted, unless every one is refused.
fn attach_each(
    prog: &ProgramMut<'_>,
    pid: i32,
    path: &Path,
    offsets: &[u64],
) -> Result<(Links, Vec<Refusal>)> {
    let mut links = Links::default();
    let mut refused = Vec::new();
    for (i, &off) in offsets.iter().enumerate() {
        let opts = libbpf_rs::UprobeOpts {
            cookie: i as u64,
            ..Default::default()
        };
        match prog.attach_uprobe_with_opts(pid, path, off as usize, opts) {
            Ok(link) => links.push(link),
            Err(e) => {
                let e = anyhow::Error::from(e);
                // Not allowed, or not possible at all here: the same for every function.
                if links.is_empty()
                    && (i + 1 == offsets.len() || refused.len() + 1 >= GIVE_UP_AFTER)
                {
                    return Err(e);
                }
                crate::core::bpf_log::take();
                refused.push(Refusal {
                    index: i,
                    errno: os_error(&e),
                    why: format!("{e:#}"),
                });
            }
        }
    }
    Ok((links, refused))
}

/// `--count`: a counting uprobe at every function, each with its index as BPF cookie (the
/// slot of `counts_by_cookie` it adds to): one uprobe_multi link, else one perf event per
/// function. Functions the kernel refuses are returned, not attached.
pub fn load_count(
    plan: &Plan,
    path: &Path,
    funcs: &[Func],
) -> Result<(Uprobe, Links, Hook, Vec<Refusal>)> {
    let (hook, (skel, links, refused)) =
        first_hook(|hook| load_count_hook(plan, path, funcs, hook))?;
    Ok((skel, links, hook, refused))
}

/// One `--count` load as core::lifecycle drives it: the plan, the file and its
/// functions, and the functions the kernel refused (filled while attaching).
struct CountLoad<'a> {
    plan: &'a Plan,
    path: &'a Path,
    funcs: &'a [Func],
    refused: RefCell<Vec<Refusal>>,
}

impl Declaration for CountLoad<'_> {
    type Kind = UprobeKind;
    type Way = Hook;
    const DRIVERS: &'static [Driver] = crate::tracers::func::DRIVERS;
    const TREE: Tree = Tree::First;

    fn scope(&self) -> &Scope {
        &self.plan.scope
    }

    fn configure(&self, hook: Hook, open: &mut OpenUprobeSkel<'_>) -> Result<()> {
        self.plan.configure(open.open_object_mut(), false)?;
        open.maps
            .counts_by_cookie
            .set_max_entries(self.funcs.len().max(1) as u32)?;
        let p = &mut open.progs;
        p.func_uprobe.set_autoload(false);
        p.func_uretprobe.set_autoload(false);
        p.func_usdt.set_autoload(false);
        p.func_count.set_autoload(true);
        prepare(&mut p.func_count, hook);
        Ok(())
    }

    fn hooks(&self, hook: Hook, skel: &UprobeSkel<'_>, links: &mut Links) -> Result<()> {
        let pid = attach_pid(self.plan);
        let offsets: Vec<u64> = self.funcs.iter().map(|f| f.offset).collect();
        let (probes, refused) = match hook {
            Hook::Multi => attach_multi(&skel.progs.func_count, pid, self.path, &offsets)?,
            Hook::PerfEvent => attach_each(&skel.progs.func_count, pid, self.path, &offsets)?,
        };
        links.append(probes);
        *self.refused.borrow_mut() = refused;
        Ok(())
    }
}

fn load_count_hook(
    plan: &Plan,
    path: &Path,
    funcs: &[Func],
    hook: Hook,
) -> Result<(Uprobe, Links, Vec<Refusal>)> {
    let decl = CountLoad {
        plan,
        path,
        funcs,
        refused: RefCell::default(),
    };
    let (skel, links) = lifecycle::load_way(&decl, hook)?;
    Ok((skel, links, decl.refused.into_inner()))
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
            crate::model::abi::STR_SIZE_MIN,
        );
        let probe = Probe::Func {
            path: &exe,
            offset: f.offset,
        };
        let (_skel, _links, hook) = load(&plan, &probe)?;
        Ok(format!("uprobe attached via {hook}"))
    })();
    // The error of load says what the kernel refused; the fix follows from it.
    let fix = match &result {
        Err(e) if format!("{e:#}").contains("CAP_SYS_ADMIN") => {
            "grant CAP_SYS_ADMIN (uprobes through perf events need it), or use Linux 6.6+, where uprobe_multi links need only CAP_BPF and CAP_PERFMON"
        }
        _ => "needs CONFIG_UPROBE_EVENTS and a ring buffer (Linux 5.8+)",
    };
    vec![Check {
        mode: None,
        result,
        fix,
    }]
}
