//! The kernel function tracer: every call of one function as an event, its arguments
//! named and typed from the kernel's BTF; with `--ret`, the return value and latency.
//! fentry/fexit where the kernel allows them, else kprobe/kretprobe (decided by trying).

use std::fmt;

use anyhow::{bail, Result};
use clap::ValueEnum;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::Link;
use serde_json::{json, Map, Value};

use crate::core::abi::STR_LEN;
use crate::core::features;
use crate::core::scope::Scope;
use crate::model::task::Head;
use crate::resolve::btf::{self, Proto, ValueKind};
use crate::resolve::tracefs_format::c_string;
use crate::tracers::Check;

use super::skel::{types, Kprobe, KprobeSkelBuilder, FUNC_MAX_ARGS, FUNC_MAX_STRS, FUNC_NO_STR};

/// Ring buffer between the kernel and btrace (a power of two, in bytes).
const RINGBUF_BYTES: u32 = 4 << 20;
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

/// Everything fixed before load: the function, what to read of it, the filters.
#[derive(Debug)]
pub struct Plan {
    pub func: String,
    /// None when the function is in kallsyms but not in BTF (kprobe only, no arguments).
    pub proto: Option<Proto>,
    pub with_ret: bool,
    pub max_inflight: u32,
    pub scope: Scope,
}

impl Plan {
    pub fn nr_args(&self) -> usize {
        self.proto
            .as_ref()
            .map_or(0, |p| p.readable_args(FUNC_MAX_ARGS))
    }

    /// The string slot of each argument (FUNC_NO_STR when not read as a string).
    pub fn str_slots(&self) -> [u8; FUNC_MAX_ARGS] {
        let mut slots = [FUNC_NO_STR; FUNC_MAX_ARGS];
        let mut next = 0u8;
        if let Some(p) = &self.proto {
            for (i, a) in p.args.iter().take(self.nr_args()).enumerate() {
                if a.kind == ValueKind::Str && (next as usize) < FUNC_MAX_STRS {
                    slots[i] = next;
                    next += 1;
                }
            }
        }
        slots
    }

    pub fn ret_kind(&self) -> ValueKind {
        self.proto.as_ref().map_or(
            ValueKind::Int {
                signed: true,
                width: 8,
            },
            |p| p.ret.clone(),
        )
    }
}

/// Why fentry cannot even be tried for this function (BTF is required; its argument
/// slots must be plain registers).
fn fentry_unfit(plan: &Plan) -> Option<String> {
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

/// Opens, configures, loads and attaches the programs of one mode.
pub fn load(mode: Mode, plan: &Plan) -> Result<(Kprobe, Vec<Link>)> {
    if mode == Mode::Fentry {
        if let Some(why) = fentry_unfit(plan) {
            bail!("{why}");
        }
    }
    let skel = Kprobe::new(|storage| {
        let mut open = KprobeSkelBuilder::default().open(storage)?;
        {
            let ro = open
                .maps
                .rodata_data
                .as_deref_mut()
                .expect("kprobe has rodata");
            ro.nr_args = plan.nr_args() as u32;
            ro.ret_slot = plan.proto.as_ref().map_or(0, |p| p.args.len() as u32);
            ro.has_ret = plan.ret_kind() != ValueKind::Void;
            ro.with_ret = plan.with_ret;
            ro.str_slot = plan.str_slots();
        }
        crate::apply_scope!(open, &plan.scope, true);
        open.maps.events.set_max_entries(RINGBUF_BYTES)?;
        open.maps
            .inflight
            .set_max_entries(if plan.with_ret { plan.max_inflight } else { 1 })?;
        let p = &mut open.progs;
        let (entry_on, exit_on) = (true, plan.with_ret);
        p.func_fentry.set_autoload(mode == Mode::Fentry && entry_on);
        p.func_fexit.set_autoload(mode == Mode::Fentry && exit_on);
        p.func_kprobe.set_autoload(mode == Mode::Kprobe && entry_on);
        p.func_kretprobe
            .set_autoload(mode == Mode::Kprobe && exit_on);
        if mode == Mode::Fentry {
            p.func_fentry
                .set_attach_target(0, Some(plan.func.clone()))?;
            p.func_fexit.set_attach_target(0, Some(plan.func.clone()))?;
        }
        let kp = open.load()?;
        plan.scope.install(&kp.maps.scope_cgroups)?;
        Ok(kp)
    })?;
    // The process tree is kept from before the first traced call on.
    let mut links = crate::core::scope::attach_tree(skel.object())?;
    // Entry first: a return seen before its entry's hook existed would count as a loss.
    match mode {
        Mode::Fentry => {
            links.push(skel.progs.func_fentry.attach_trace()?);
            if plan.with_ret {
                links.push(skel.progs.func_fexit.attach_trace()?);
            }
        }
        Mode::Kprobe => {
            links.push(skel.progs.func_kprobe.attach_kprobe(false, &plan.func)?);
            if plan.with_ret {
                links.push(skel.progs.func_kretprobe.attach_kprobe(true, &plan.func)?);
            }
        }
    }
    plan.scope.seed(&skel.maps.scope_procs)?;
    Ok((skel, links))
}

/// The modes to try, in order, for what the user asked.
pub fn modes(mode: ModeArg) -> Vec<Mode> {
    match mode {
        ModeArg::Auto => vec![Mode::Fentry, Mode::Kprobe],
        ModeArg::Fentry => vec![Mode::Fentry],
        ModeArg::Kprobe => vec![Mode::Kprobe],
    }
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

/// One call as it came from the kernel.
pub struct FuncEvent {
    pub head: Head,
    pub args: [u64; FUNC_MAX_ARGS],
    pub ret: u64,
    pub latency_ns: u64,
    pub strs: Vec<String>,
}

pub fn decode_record(data: &[u8]) -> Option<FuncEvent> {
    let size = std::mem::size_of::<types::func_event>();
    let e: &types::func_event = plain::from_bytes(data.get(..size)?).ok()?;
    let hdr = crate::core::abi::types::task_hdr {
        ts_ns: e.h.ts_ns,
        pid: e.h.pid,
        tid: e.h.tid,
        comm: e.h.comm,
    };
    Some(FuncEvent {
        head: Head::from_hdr(&hdr),
        args: e.args,
        ret: e.ret,
        latency_ns: e.latency_ns,
        strs: e
            .strs
            .chunks(STR_LEN)
            .map(|s| c_string(&s.iter().map(|&c| c as u8).collect::<Vec<u8>>()))
            .collect(),
    })
}

/// The arguments of one call by name, typed from the prototype.
pub fn decode_args(plan: &Plan, ev: &FuncEvent) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(proto) = &plan.proto else {
        return out;
    };
    let slots = plan.str_slots();
    let read = plan.nr_args();
    for (i, a) in proto.args.iter().enumerate() {
        let v = if i >= read {
            match &a.kind {
                ValueKind::Unsupported(why) => json!(format!("<{why}>")),
                _ => json!("<not read>"),
            }
        } else if slots[i] != FUNC_NO_STR {
            json!(ev.strs[slots[i] as usize])
        } else {
            btf::value_json(&a.kind, ev.args[i])
        };
        out.insert(a.name.clone(), v);
    }
    out
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
    use crate::resolve::btf::Arg;

    fn openat2_plan() -> Plan {
        Plan {
            func: "do_sys_openat2".into(),
            proto: Some(Proto {
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
                        kind: ValueKind::Str,
                    },
                    Arg {
                        name: "how".into(),
                        kind: ValueKind::Pointer,
                    },
                ],
                ret: ValueKind::Int {
                    signed: true,
                    width: 8,
                },
            }),
            with_ret: true,
            max_inflight: 16,
            scope: Scope::default(),
        }
    }

    #[test]
    fn strings_get_slots_in_order() {
        let p = openat2_plan();
        assert_eq!(p.nr_args(), 3);
        assert_eq!(p.str_slots(), [0xff, 0, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn arguments_decoded_by_name_and_type() {
        let p = openat2_plan();
        let mut strs = vec![String::new(); FUNC_MAX_STRS];
        strs[0] = "/etc/hostname".into();
        let ev = FuncEvent {
            head: Head {
                ts_ns: 1,
                pid: 2,
                tid: 3,
                comm: "cat".into(),
            },
            args: [
                (-100i64) as u64,
                0x7fff_0000,
                0xffff_8880_0000_0040,
                0,
                0,
                0,
            ],
            ret: 3,
            latency_ns: 1234,
            strs,
        };
        let a = decode_args(&p, &ev);
        assert_eq!(
            Value::Object(a),
            json!({"dfd": -100, "filename": "/etc/hostname", "how": "0xffff888000000040"})
        );
    }

    #[test]
    fn no_btf_means_no_fentry() {
        let mut p = openat2_plan();
        p.proto = None;
        assert!(fentry_unfit(&p).unwrap().contains("no BTF prototype"));
        assert!(fentry_unfit(&openat2_plan()).is_none());
        assert_eq!(modes(ModeArg::Auto), [Mode::Fentry, Mode::Kprobe]);
    }

    #[test]
    fn event_layout_matches_the_kernel() {
        // SAFETY: a plain struct of integers and chars, valid all zero.
        let e: types::func_event = unsafe { std::mem::zeroed() };
        assert_eq!(e.args.len(), FUNC_MAX_ARGS);
        assert_eq!(e.strs.len(), FUNC_MAX_STRS * STR_LEN);
    }
}
