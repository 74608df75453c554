// SPDX-License-Identifier: Apache-2.0
//! The kernel function tracer: every call of one function as an event, its arguments
//! named and typed from the kernel's BTF; with `--ret`, the return value and latency.
//! fentry/fexit where the kernel allows them, else kprobe/kretprobe (decided by trying).

use std::fmt;

use anyhow::{bail, Result};
use clap::ValueEnum;
use libbpf_rs::skel::OpenSkel;
use libbpf_rs::Link;

use crate::core::attach::{os_error, Links};
use crate::core::features;
use crate::core::kmem::Driver;
use crate::core::lifecycle::{self, Declaration, Tree};
use crate::core::rodata;
use crate::core::scope::Scope;
use crate::resolve::btf::{self, Proto};
use crate::tracers::Check;

use super::skel::{Kprobe, KprobeKind, KprobeSkel, OpenKprobeSkel};
use crate::tracers::func::{self, Plan};

pub const DEFAULT_MAX_INFLIGHT: u32 = 10240;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// fentry when the kernel allows it, else kprobe (decided by trying)
    Auto,
    Fentry,
    Kprobe,
}

/// The hook actually used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Fentry,
    Kprobe,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Fentry => "fentry",
            Mode::Kprobe => "kprobe",
        })
    }
}

/// Functions btrace never traces with fentry, on any kernel: the BPF trampoline and the
/// program run time call them, so a trampoline on them recurses. Newer kernels refuse
/// them (kernel/bpf/verifier.c's btf_id_deny, Linux 6.12: migrate_disable/enable,
/// rcu_read_unlock_strict, preempt_count_add/sub, __rcu_read_lock/unlock); older ones do
/// not, and hang: fentry on __rcu_read_lock stopped a 6.1 guest for good. kprobes have
/// their own recursion guard (a recursive hit is counted as missed), so these go there.
pub const FENTRY_DENY: &[&str] = &[
    "migrate_disable",
    "migrate_enable",
    "rcu_read_unlock_strict",
    "preempt_count_add",
    "preempt_count_sub",
    "__rcu_read_lock",
    "__rcu_read_unlock",
];

/// Functions a BPF program's own helpers take on their way (spin locks, the hash maps'
/// free lists, the ring buffer's reserve): fentry on one re-enters the program from
/// inside itself. Kernels from 5.12 catch that (a per-program recursion counter, struct
/// bpf_prog's `active`) and count it as missed; 5.10's trampolines do not, and the
/// program spins on a lock it already holds with interrupts off: fentry --ret on
/// _raw_spin_lock stopped a 5.10 guest for good. By name prefix, since the set is
/// everything below those helpers.
const FENTRY_REENTRANT_PREFIXES: &[&str] = &[
    "_raw_spin_",
    "_raw_read_",
    "_raw_write_",
    "do_raw_spin_",
    "queued_spin_",
    "queued_read_",
    "queued_write_",
    "native_queued_spin_",
    "__pv_queued_spin_",
    "pcpu_freelist_",
    "__pcpu_freelist_",
    "htab_",
    "__htab_",
    "bpf_",
    "__bpf_",
    "ringbuf_",
];

/// Whether this kernel's BPF trampolines stop a program from re-entering itself (5.12+);
/// told by BTF, assumed when the BTF cannot say.
fn trampolines_guard_recursion() -> bool {
    crate::resolve::btf::vmlinux()
        .ok()
        .and_then(|btf| crate::resolve::btf::struct_has_member(&btf, "bpf_prog", "active"))
        .unwrap_or(true)
}

/// Why fentry on `func` would re-enter its own program on this kernel, if it would.
fn fentry_reenters(func: &str) -> Option<String> {
    if !FENTRY_REENTRANT_PREFIXES
        .iter()
        .any(|p| func.starts_with(p))
        || trampolines_guard_recursion()
    {
        return None;
    }
    Some(format!(
        "'{func}' is taken by the BPF program's own helpers, and this kernel's trampolines (before 5.12) do not stop a program from re-entering itself: fentry on it would deadlock; use --hook kprobe, which guards against recursion"
    ))
}

/// Why fentry cannot even be tried for this function (BTF is required; its argument
/// slots must be plain registers; never on the deny list).
fn fentry_unfit(plan: &Plan) -> Option<String> {
    if FENTRY_DENY.contains(&plan.func.as_str()) {
        return Some(format!(
            "'{}' is used by the BPF trampoline itself: fentry on it recurses (older kernels hang, newer ones refuse it); use --hook kprobe, which guards against recursion",
            plan.func
        ));
    }
    if let Some(why) = fentry_reenters(&plan.func) {
        return Some(why);
    }
    match &plan.proto {
        None => Some(format!(
            "'{}' has no BTF prototype, which fentry needs",
            plan.func
        )),
        Some(p) if p.args.iter().any(|a| !a.kind.is_register()) => Some(format!(
            "'{}' takes a struct or float by value, whose fentry argument layout btrace does not read",
            plan.func
        )),
        Some(_) => None,
    }
}

/// Opens, configures, loads and attaches the programs of one mode; a refusal says what it
/// means.
pub fn load(mode: Mode, plan: &Plan) -> Result<(Kprobe, Vec<Link>)> {
    load_mode(mode, plan).map_err(|e| match explain_refusal(mode, &plan.func, &e) {
        Some(why) => anyhow::anyhow!("{why} [{e:#}]"),
        None => e,
    })
}

/// One load of the function tracer as core::lifecycle drives it: the plan, and whether
/// --hist keeps its entry times in task storage.
struct KprobeLoad<'a> {
    plan: &'a Plan,
    task_store: bool,
}

impl Declaration for KprobeLoad<'_> {
    type Kind = KprobeKind;
    type Way = Mode;
    const DRIVERS: &'static [Driver] = func::DRIVERS;
    // The process tree is kept from before the first traced call on.
    const TREE: Tree = Tree::First;

    fn scope(&self) -> &Scope {
        &self.plan.scope
    }

    fn configure(&self, mode: Mode, open: &mut OpenKprobeSkel<'_>) -> Result<()> {
        let plan = self.plan;
        rodata::typed(&mut open.maps.rodata_data).ret_slot =
            plan.proto.as_ref().map_or(0, |p| p.args.len() as u32);
        plan.configure(open.open_object_mut(), self.task_store)?;
        let p = &mut open.progs;
        let (entry_on, exit_on) = (true, plan.needs_return());
        p.func_fentry.set_autoload(mode == Mode::Fentry && entry_on);
        p.func_fexit.set_autoload(mode == Mode::Fentry && exit_on);
        p.func_kprobe.set_autoload(mode == Mode::Kprobe && entry_on);
        p.func_kretprobe
            .set_autoload(mode == Mode::Kprobe && exit_on);
        // --count's programs (count.rs); kprobe.multi does not even load before 5.18.
        p.func_kcount.set_autoload(false);
        p.func_kcount_multi.set_autoload(false);
        if mode == Mode::Fentry {
            p.func_fentry
                .set_attach_target(0, Some(plan.func.clone()))?;
            p.func_fexit.set_attach_target(0, Some(plan.func.clone()))?;
        }
        Ok(())
    }

    // Entry first: a return seen before its entry's hook existed would count as a loss.
    fn hooks(&self, mode: Mode, skel: &KprobeSkel<'_>, links: &mut Links) -> Result<()> {
        let plan = self.plan;
        match mode {
            Mode::Fentry => {
                links.push(skel.progs.func_fentry.attach_trace()?);
                if plan.needs_return() {
                    links.push(skel.progs.func_fexit.attach_trace()?);
                }
            }
            Mode::Kprobe => {
                links.push(skel.progs.func_kprobe.attach_kprobe(false, &plan.func)?);
                if plan.needs_return() {
                    links.push(skel.progs.func_kretprobe.attach_kprobe(true, &plan.func)?);
                }
            }
        }
        Ok(())
    }
}

fn load_mode(mode: Mode, plan: &Plan) -> Result<(Kprobe, Vec<Link>)> {
    if mode == Mode::Fentry {
        if let Some(why) = fentry_unfit(plan) {
            bail!("{why}");
        }
    }
    let (decl, skel) = func::with_store_fallback(plan, |task_store| {
        let decl = KprobeLoad { plan, task_store };
        let skel = lifecycle::open_load(&decl, mode)?;
        Ok((decl, skel))
    })?;
    let links = lifecycle::attach(&decl, mode, &skel)?;
    Ok((skel, links.into_vec()))
}

/// The modes to try, in order, for what the user asked; auto never tries fentry on a
/// function of the deny list.
pub fn modes(mode: ModeArg, func: &str) -> Vec<Mode> {
    match mode {
        ModeArg::Auto if FENTRY_DENY.contains(&func) || fentry_reenters(func).is_some() => {
            vec![Mode::Kprobe]
        }
        ModeArg::Auto => vec![Mode::Fentry, Mode::Kprobe],
        ModeArg::Fentry => vec![Mode::Fentry],
        ModeArg::Kprobe => vec![Mode::Kprobe],
    }
}

/// Bound of --max-inflight: each call in flight keeps its whole event (about 1 KB with
/// the default string size), so more would cost hundreds of MB of kernel memory.
pub const MAX_INFLIGHT_LIMIT: u32 = 1 << 18;

/// `--max-inflight N`, bounded (see [`crate::core::system::parse_store_size`]).
pub fn parse_max_inflight(s: &str) -> std::result::Result<u32, String> {
    crate::core::system::parse_store_size(
        s,
        MAX_INFLIGHT_LIMIT,
        "calls in flight at once across all threads",
        4,
        func::EVENT_BYTES as u64 + 3 * 264,
    )
}

/// What a refused fentry/kprobe means, in words, with what works instead.
pub fn explain_refusal(mode: Mode, func: &str, e: &anyhow::Error) -> Option<String> {
    use crate::model::errno::ENOTSUPP;
    let why = match (mode, os_error(e)?) {
        (Mode::Fentry, libc::EACCES) => format!(
            "the verifier cannot read '{func}''s arguments as declared on this kernel"
        ),
        (Mode::Fentry, libc::EINVAL) => format!(
            "this kernel does not allow fentry on '{func}' (on its deny list, or not traceable: notrace or inlined)"
        ),
        (Mode::Fentry, ENOTSUPP) | (Mode::Fentry, libc::E2BIG) => format!(
            "a BPF trampoline cannot attach to '{func}' (too many arguments, or arguments passed by value that trampolines do not handle)"
        ),
        (Mode::Fentry, libc::EBUSY) => format!(
            "'{func}' is already taken by another ftrace direct call (a livepatch or another tool)"
        ),
        (Mode::Fentry, libc::EPERM) => {
            "function tracing is not allowed here (kernel lockdown or a sandbox)".to_string()
        }
        (Mode::Kprobe, libc::EINVAL) => format!(
            "the kernel will not place a kprobe on '{func}': it is marked notrace/NOKPROBE, on the kprobe blacklist (/sys/kernel/debug/kprobes/blacklist), or inlined everywhere"
        ),
        (Mode::Kprobe, libc::ENOENT) => {
            format!("no kprobe-able symbol '{func}' (a static function may have been renamed, e.g. '{func}.constprop.0')")
        }
        _ => return None,
    };
    let instead = match mode {
        Mode::Fentry => "--hook kprobe works where kprobes exist",
        Mode::Kprobe => "trace a caller, or a tracepoint near it",
    };
    Some(format!("{why}; {instead}"))
}

/// The function's prototype, or the one clear error for a function that does not exist.
pub fn resolve(func: &str) -> Result<Option<Proto>> {
    if let Some(p) = btf::lookup(func)? {
        return Ok(Some(p));
    }
    if btf::in_kallsyms(func) {
        return Ok(None);
    }
    bail!(
        "unknown kernel function '{func}': it is neither in the kernel's BTF nor in /proc/kallsyms (check the name: grep -w {func} /proc/kallsyms)"
    )
}

/// The one line for a kernel where this command cannot work at all, if this is one.
pub fn kernel_cannot(mode: ModeArg) -> Option<String> {
    let kprobes = features::kprobes_present();
    match mode {
        ModeArg::Kprobe if !kprobes => Some(
            "this kernel has no kprobes (CONFIG_KPROBES is not set); try --hook fentry, and run `btrace doctor` to see what works here".into(),
        ),
        ModeArg::Auto if !kprobes => {
            let fentry = features::fentry();
            (!fentry.ok).then(|| {
                format!(
                    "this kernel has neither kprobes (CONFIG_KPROBES is not set) nor fentry ({}); run `btrace doctor` to see what works here",
                    fentry.detail
                )
            })
        }
        _ => None,
    }
}

/// Every mode of the command, as doctor reports it (found by real attaches).
pub fn checks() -> Vec<Check> {
    let fentry = features::fentry();
    let kprobe = features::kprobe();
    let as_result = |p: &features::Probe| -> Result<String> {
        if p.ok {
            Ok(p.detail.clone())
        } else {
            Err(anyhow::anyhow!("{}", p.detail))
        }
    };
    let auto = if fentry.ok {
        Ok("via fentry".to_string())
    } else if kprobe.ok {
        Ok("via kprobe (fentry refused)".to_string())
    } else {
        Err(anyhow::anyhow!(
            "neither kprobes nor fentry work on this kernel"
        ))
    };
    vec![
        Check {
            mode: Some("fentry"),
            result: as_result(&fentry),
            fix: "fentry needs BPF trampolines (x86-64/arm64, Linux 5.5+, CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS) and a host that allows function tracing; use --hook kprobe",
        },
        Check {
            mode: Some("kprobe"),
            result: as_result(&kprobe),
            fix: "use a kernel built with CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y (distribution kernels are)",
        },
        Check {
            mode: Some("auto"),
            result: auto,
            fix: "trace through tracepoints instead (btrace tracepoint), or use a kernel with CONFIG_KPROBES=y",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::skel::SkelKind;
    use crate::resolve::btf::Arg;
    use crate::resolve::btf::ValueKind;

    fn openat2_plan() -> Plan {
        let proto = Proto {
            func: "do_sys_openat2".into(),
            args: vec![
                Arg {
                    name: "dfd".into(),
                    kind: ValueKind::Int {
                        signed: true,
                        width: 4,
                    },
                },
                Arg {
                    name: "filename".into(),
                    kind: ValueKind::Str { constant: true },
                },
            ],
            ret: ValueKind::Int {
                signed: true,
                width: 8,
            },
        };
        Plan::new(
            "do_sys_openat2",
            Some(proto),
            true,
            16,
            Scope::default(),
            16,
        )
    }

    #[test]
    fn refusals_are_explained() {
        let e = anyhow::anyhow!("attaching: Invalid argument (os error 22)");
        let why = explain_refusal(Mode::Kprobe, "f", &e).unwrap();
        assert!(why.contains("blacklist"), "{why}");
        let e = anyhow::Error::new(std::io::Error::from_raw_os_error(524));
        let why = explain_refusal(Mode::Fentry, "f", &e).unwrap();
        assert!(
            why.contains("too many arguments") && why.contains("--hook kprobe"),
            "{why}"
        );
        let e = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EBUSY));
        assert!(explain_refusal(Mode::Fentry, "f", &e)
            .unwrap()
            .contains("livepatch"));
        assert!(explain_refusal(Mode::Kprobe, "f", &anyhow::anyhow!("other")).is_none());
    }

    #[test]
    fn no_btf_means_no_fentry() {
        let mut p = openat2_plan();
        p.proto = None;
        assert!(fentry_unfit(&p).unwrap().contains("no BTF prototype"));
        assert!(fentry_unfit(&openat2_plan()).is_none());
        assert_eq!(
            modes(ModeArg::Auto, "do_sys_openat2"),
            [Mode::Fentry, Mode::Kprobe]
        );
        // The trampoline's own functions never get fentry.
        assert_eq!(modes(ModeArg::Auto, "__rcu_read_lock"), [Mode::Kprobe]);
        let mut p = openat2_plan();
        p.func = "__rcu_read_lock".into();
        assert!(fentry_unfit(&p).unwrap().contains("--hook kprobe"));
    }

    /// What the lifecycle writes by name (the scope's settings, func_probe.h's) lands in
    /// the fields the generated skeleton types, and the tree programs load as asked.
    #[test]
    fn settings_written_by_name_land_in_the_typed_rodata() {
        let mut storage = std::mem::MaybeUninit::uninit();
        let mut open = KprobeKind::open(&mut storage).unwrap();
        let mut plan = openat2_plan();
        plan.scope.tgid = 42;
        plan.scope.tid = 7;
        plan.scope.tree = Some(9);
        plan.scope.comm = Some(crate::core::scope::comm_bytes("workload").unwrap());
        plan.stack = true;
        plan.scope.configure(open.open_object_mut(), false).unwrap();
        plan.configure(open.open_object_mut(), false).unwrap();
        let ro = open.maps.rodata_data.as_deref().unwrap();
        assert_eq!((ro.scope_tgid, ro.scope_tid, ro.scope_tree), (42, 7, true));
        assert!(ro.scope_by_comm);
        assert_eq!(ro.scope_comm, plan.scope.comm_chars());
        assert_eq!((ro.nr_args, ro.has_ret, ro.with_ret), (2, true, true));
        assert_eq!((ro.str_size, ro.ev_size), (16, plan.ev_size() as u32));
        assert_eq!(ro.arg_read, plan.reads.map(|r| r.how));
        assert_eq!(ro.arg_slot, plan.reads.map(|r| r.slot));
        assert_eq!(
            (ro.want_stack, ro.stack_off),
            (true, plan.stack_off().unwrap() as u32)
        );
        assert_eq!(
            (ro.rb_wake_bytes, ro.rb_wake_gap_ns),
            (
                crate::core::stream::wake_bytes(plan.ring_bytes),
                crate::core::stream::WAKE_GAP_NS
            )
        );
        assert!(!ro.hist_on && !ro.hist_task_store);
        // The tree kept on classic tracepoints (raw = false), sized for every pid.
        assert!(open.progs.scope_fork_tp.autoload() && open.progs.scope_exit_tp.autoload());
        assert!(!open.progs.scope_fork_raw.autoload() && !open.progs.scope_exit_raw.autoload());
        assert_eq!(open.maps.scope_procs.max_entries(), plan.scope.tree_words());
        assert_eq!(open.maps.inflight.value_size(), plan.ev_size() as u32);
        assert_eq!(open.maps.inflight.max_entries(), 16);
    }
}
