// SPDX-License-Identifier: Apache-2.0
//! The kernel function tracer: every call of one function as an event, its arguments
//! named and typed from the kernel's BTF; with `--ret`, the return value and latency.
//! fentry/fexit where the kernel allows them, else kprobe/kretprobe (decided by trying).

use std::fmt;

use anyhow::{bail, Result};
use clap::ValueEnum;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::Link;

use crate::core::features;
use crate::core::scope::Scope;
use crate::core::slots;
use crate::model::task::Head;
use crate::model::value::{Field, Val};
use crate::resolve::btf::{self, Proto, ValueKind};
use crate::resolve::buffers::{self, Direction, Shape};
use crate::tracers::Check;

use super::skel::{types, Kprobe, KprobeSkelBuilder, FUNC_MAX_ARGS, FUNC_MAX_SLOTS};

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

/// How one argument is read, as the kernel program is told (enum arg_read and its slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgRead {
    /// enum arg_read.
    pub how: u8,
    /// Its string slot (strings and buffers).
    pub slot: u8,
    /// Buffers: the argument holding the length.
    pub len: u8,
}

const RAW: ArgRead = ArgRead {
    how: types::arg_read::ARG_RAW.0 as u8,
    slot: 0,
    len: 0,
};

/// Everything fixed before load: the function, what to read of it, the filters.
#[derive(Debug)]
pub struct Plan {
    pub func: String,
    /// None when the function is in kallsyms but not in BTF (kprobe only, no arguments).
    pub proto: Option<Proto>,
    pub with_ret: bool,
    pub max_inflight: u32,
    pub scope: Scope,
    /// Bytes kept of a string or buffer (--string-size).
    pub str_size: usize,
    /// How each argument is read.
    pub reads: [ArgRead; FUNC_MAX_ARGS],
    /// --stack: both stacks at entry, after the string slots.
    pub stack: bool,
}

impl Plan {
    pub fn new(
        func: &str,
        proto: Option<Proto>,
        with_ret: bool,
        max_inflight: u32,
        scope: Scope,
        str_size: usize,
    ) -> Plan {
        let mut plan = Plan {
            func: func.to_string(),
            proto,
            with_ret,
            max_inflight,
            scope,
            str_size,
            reads: [RAW; FUNC_MAX_ARGS],
            stack: false,
        };
        plan.reads = plan.arg_reads();
        plan
    }

    pub fn nr_args(&self) -> usize {
        self.proto
            .as_ref()
            .map_or(0, |p| p.readable_args(FUNC_MAX_ARGS))
    }

    /// Strings, and buffers paired with their length argument, in argument order, as
    /// long as there are slots for them.
    fn arg_reads(&self) -> [ArgRead; FUNC_MAX_ARGS] {
        let mut reads = [RAW; FUNC_MAX_ARGS];
        let Some(p) = &self.proto else {
            return reads;
        };
        let args = &p.args[..self.nr_args()];
        let shapes: Vec<(&str, Shape)> = args
            .iter()
            .map(|a| {
                let shape = match a.kind {
                    ValueKind::Str { constant } => Shape::CharPtr { constant },
                    ValueKind::Pointer => Shape::Ptr,
                    ValueKind::Int { .. } => Shape::Int,
                    _ => Shape::Other,
                };
                (a.name.as_str(), shape)
            })
            .collect();
        let pairs = buffers::pairs(&self.func, &shapes);
        let mut next = 0u8;
        for (i, a) in args.iter().enumerate() {
            let (how, len) = match pairs.iter().find(|p| p.buf == i) {
                Some(p) if p.dir == Direction::In => (types::arg_read::ARG_BUF_IN, p.len),
                Some(p) => (types::arg_read::ARG_BUF_OUT, p.len),
                None if matches!(a.kind, ValueKind::Str { .. }) => (types::arg_read::ARG_STR, 0),
                None => continue,
            };
            if next as usize == FUNC_MAX_SLOTS {
                break;
            }
            reads[i] = ArgRead {
                how: how.0 as u8,
                slot: next,
                len: len as u8,
            };
            next += 1;
        }
        reads
    }

    /// String slots used.
    pub fn n_slots(&self) -> usize {
        self.reads.iter().filter(|r| **r != RAW).count()
    }

    /// Bytes of one event: the fixed part, its string slots, and with --stack the stacks.
    pub fn ev_size(&self) -> usize {
        match self.stack_off() {
            Some(off) => off + std::mem::size_of::<crate::core::abi::types::stack_slot>(),
            None => self.slots_end(),
        }
    }

    fn slots_end(&self) -> usize {
        std::mem::size_of::<types::func_event>() + self.n_slots() * slots::slot_bytes(self.str_size)
    }

    /// --stack: where the stacks are in an event (struct stack_slot).
    pub fn stack_off(&self) -> Option<usize> {
        self.stack.then(|| self.slots_end().next_multiple_of(8))
    }

    /// What the function returns; a function without a prototype has no known return.
    pub fn ret_kind(&self) -> ValueKind {
        self.proto
            .as_ref()
            .map_or(ValueKind::Void, |p| p.ret.clone())
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

fn load_mode(mode: Mode, plan: &Plan) -> Result<(Kprobe, Vec<Link>)> {
    if mode == Mode::Fentry {
        if let Some(why) = fentry_unfit(plan) {
            bail!("{why}");
        }
    }
    let skel = Kprobe::new(|storage| {
        let mut open = crate::skel_builder!(KprobeSkelBuilder).open(storage)?;
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
            ro.str_size = plan.str_size as u32;
            ro.str_slot_bytes = slots::slot_bytes(plan.str_size) as u32;
            ro.ev_size = plan.ev_size() as u32;
            if let Some(off) = plan.stack_off() {
                ro.want_stack = true;
                ro.stack_off = off as u32;
            }
            for (i, r) in plan.reads.iter().enumerate() {
                ro.arg_read[i] = r.how;
                ro.arg_slot[i] = r.slot;
                ro.arg_len[i] = r.len;
            }
        }
        crate::apply_scope!(open, &plan.scope, true);
        open.maps.events.set_max_entries(RINGBUF_BYTES)?;
        open.maps.scratch.set_value_size(plan.ev_size() as u32)?;
        open.maps.inflight.set_value_size(plan.ev_size() as u32)?;
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
        std::mem::size_of::<types::func_event>() as u64 + 3 * 264,
    )
}

/// The operating-system error code behind a load or attach failure, if any.
fn os_error(e: &anyhow::Error) -> Option<i32> {
    if let Some(code) = e
        .chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>()?.raw_os_error())
    {
        return Some(code);
    }
    // libbpf-rs keeps the io::Error inside; its text ends with "(os error N)".
    let text = format!("{e:#}");
    let at = text.rfind("(os error ")?;
    text[at + 10..].split(')').next()?.trim().parse().ok()
}

/// What a refused fentry/kprobe means, in words, with what works instead.
pub fn explain_refusal(mode: Mode, func: &str, e: &anyhow::Error) -> Option<String> {
    const ENOTSUPP: i32 = 524;
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

/// One call as it came from the kernel.
pub struct FuncEvent {
    pub head: Head,
    pub args: [u64; FUNC_MAX_ARGS],
    pub ret: u64,
    pub latency_ns: u64,
    /// The whole record (its string slots follow the fixed part).
    pub rec: Vec<u8>,
}

pub fn decode_record(data: &[u8]) -> Option<FuncEvent> {
    let size = std::mem::size_of::<types::func_event>();
    let e: &types::func_event = plain::from_bytes(data.get(..size)?).ok()?;
    let hdr = crate::core::abi::types::task_hdr {
        ts_ns: e.h.ts_ns,
        pid: e.h.pid,
        tid: e.h.tid,
        comm: e.h.comm,
        ns_pid: e.h.ns_pid,
        ns_tid: e.h.ns_tid,
        cgroup_id: e.h.cgroup_id,
    };
    Some(FuncEvent {
        head: Head::from_hdr(&hdr),
        args: e.args,
        ret: e.ret,
        latency_ns: e.latency_ns,
        rec: data.to_vec(),
    })
}

/// The arguments of one call by name, typed from the prototype.
pub fn decode_args<'p>(plan: &'p Plan, ev: &FuncEvent) -> Vec<Field<'p>> {
    let Some(proto) = &plan.proto else {
        return Vec::new();
    };
    let read = plan.nr_args();
    let slot_bytes = slots::slot_bytes(plan.str_size);
    proto
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if i >= read {
                let note = match &a.kind {
                    ValueKind::Unsupported(why) => format!("<{why}>"),
                    _ => "<not read>".to_string(),
                };
                return Field::plain(&a.name, Val::Note(note));
            }
            let r = plan.reads[i];
            if r != RAW {
                let off = std::mem::size_of::<types::func_event>() + r.slot as usize * slot_bytes;
                let bytes = slots::read(&ev.rec, off, plan.str_size).and_then(|s| s.val());
                // Unreadable, or an output buffer not filled: the pointer.
                return Field::plain(&a.name, bytes.unwrap_or(Val::Hex(ev.args[i])));
            }
            let (val, raw) = btf::value(&a.kind, ev.args[i]);
            Field {
                name: &a.name,
                val,
                raw,
            }
        })
        .collect()
}

/// The return value of one call, or None for a function that returns nothing (or whose
/// prototype is unknown).
pub fn decode_ret(plan: &Plan, ev: &FuncEvent) -> Option<Field<'static>> {
    let kind = plan.ret_kind();
    if kind == ValueKind::Void {
        return None;
    }
    let (val, raw) = btf::value(&kind, ev.ret);
    Some(Field {
        name: "ret",
        val,
        raw,
    })
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
    use crate::core::abi::{STR_FAULT, STR_NOT_READ, STR_TRUNCATED};
    use crate::model::value::{json_args, Marks};
    use crate::resolve::btf::Arg;
    use serde_json::{json, Value};

    fn arg(name: &str, kind: ValueKind) -> Arg {
        Arg {
            name: name.into(),
            kind,
        }
    }

    fn int(signed: bool, width: usize) -> ValueKind {
        ValueKind::Int { signed, width }
    }

    fn plan(func: &str, args: Vec<Arg>, ret: ValueKind) -> Plan {
        let proto = Proto {
            func: func.into(),
            args,
            ret,
        };
        Plan::new(func, Some(proto), true, 16, Scope::default(), 16)
    }

    fn openat2_plan() -> Plan {
        plan(
            "do_sys_openat2",
            vec![
                arg("dfd", int(true, 4)),
                arg("filename", ValueKind::Str { constant: true }),
                arg("how", ValueKind::Pointer),
            ],
            int(true, 8),
        )
    }

    /// vfs_write(file, const char *buf, size_t count, loff_t *pos), and vfs_read.
    fn vfs_plan(func: &str, constant: bool) -> Plan {
        plan(
            func,
            vec![
                arg("file", ValueKind::Pointer),
                arg("buf", ValueKind::Str { constant }),
                arg("count", int(false, 8)),
                arg("pos", ValueKind::Pointer),
            ],
            int(true, 8),
        )
    }

    /// An event with string slots `slots` (len, flags, bytes) after its fixed part.
    fn event(p: &Plan, args: [u64; FUNC_MAX_ARGS], slots: &[(u32, u32, &[u8])]) -> FuncEvent {
        let mut rec = vec![0u8; p.ev_size()];
        let base = std::mem::size_of::<types::func_event>();
        for (i, (len, flags, data)) in slots.iter().enumerate() {
            let off = base + i * slots::slot_bytes(p.str_size);
            rec[off..off + 4].copy_from_slice(&len.to_ne_bytes());
            rec[off + 4..off + 8].copy_from_slice(&flags.to_ne_bytes());
            rec[off + 8..off + 8 + data.len()].copy_from_slice(data);
        }
        FuncEvent {
            head: Head {
                ts_ns: 1,
                pid: 2,
                tid: 3,
                comm: "cat".into(),
                ns: None,
                cgroup_id: 0,
            },
            args,
            ret: 3,
            latency_ns: 1234,
            rec,
        }
    }

    fn json(fields: &[Field<'_>]) -> (Value, Marks) {
        let mut marks = Marks::default();
        (Value::Object(json_args(fields, &mut marks)), marks)
    }

    #[test]
    fn strings_and_buffers_get_slots_in_order() {
        let p = openat2_plan();
        assert_eq!(p.nr_args(), 3);
        assert_eq!(p.reads[1].how, types::arg_read::ARG_STR.0 as u8);
        assert_eq!(p.reads[0], RAW);
        assert_eq!(p.n_slots(), 1);
        let w = vfs_plan("vfs_write", true);
        assert_eq!(
            w.reads[1],
            ArgRead {
                how: types::arg_read::ARG_BUF_IN.0 as u8,
                slot: 0,
                len: 2
            }
        );
        let r = vfs_plan("vfs_read", false);
        assert_eq!(r.reads[1].how, types::arg_read::ARG_BUF_OUT.0 as u8);
        // The rule alone, for a function the table does not know.
        let other = vfs_plan("some_write", true);
        assert_eq!(other.reads[1].how, types::arg_read::ARG_BUF_IN.0 as u8);
        assert_eq!(
            w.ev_size(),
            std::mem::size_of::<types::func_event>() + slots::slot_bytes(16)
        );
    }

    #[test]
    fn arguments_decoded_by_name_and_type() {
        let p = openat2_plan();
        let ev = event(
            &p,
            [
                (-100i64) as u64,
                0x7fff_0000,
                0xffff_8880_0000_0040,
                0,
                0,
                0,
            ],
            &[(13, 0, b"/etc/hostname")],
        );
        let (a, _) = json(&decode_args(&p, &ev));
        assert_eq!(
            a,
            json!({"dfd": -100, "filename": "/etc/hostname", "how": "0xffff888000000040"})
        );
        assert_eq!(decode_ret(&p, &ev).unwrap().val, Val::Int(3));
    }

    #[test]
    fn buffers_exact_bytes_or_the_pointer() {
        let w = vfs_plan("vfs_write", true);
        let ev = event(&w, [0xff00, 0x7000, 5, 0, 0, 0], &[(5, 0, b"a\0b\n\xff")]);
        let (a, marks) = json(&decode_args(&w, &ev));
        assert_eq!(a["buf"], "a\u{0}b\n\\xff");
        assert_eq!(marks.escaped, ["buf"]);
        let cut = event(
            &w,
            [0xff00, 0x7000, 99, 0, 0, 0],
            &[(16, STR_TRUNCATED, &[b'x'; 16])],
        );
        let (_, marks) = json(&decode_args(&w, &cut));
        assert_eq!(marks.truncated, ["buf"]);
        // Not filled yet (no --ret, or ret <= 0), or unreadable: the pointer.
        let r = vfs_plan("vfs_read", false);
        for flags in [STR_NOT_READ, STR_FAULT] {
            let ev = event(&r, [0xff00, 0x7000, 5, 0, 0, 0], &[(0, flags, b"")]);
            assert_eq!(decode_args(&r, &ev)[1].val, Val::Hex(0x7000));
        }
    }

    #[test]
    fn void_and_unknown_functions_have_no_ret() {
        let v = plan("kfree", vec![arg("x", ValueKind::Pointer)], ValueKind::Void);
        let ev = event(&v, [1, 0, 0, 0, 0, 0], &[]);
        assert!(decode_ret(&v, &ev).is_none());
        let mut unknown = openat2_plan();
        unknown.proto = None;
        assert!(decode_ret(&unknown, &ev).is_none());
        // A pointer return is hex, like any pointer.
        let k = plan("kmalloc_thing", vec![], ValueKind::Pointer);
        let ev = event(&k, [0; FUNC_MAX_ARGS], &[]);
        assert_eq!(decode_ret(&k, &ev).unwrap().val.text(), "0x3");
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

    #[test]
    fn event_layout_matches_the_kernel() {
        // SAFETY: a plain struct of integers and chars, valid all zero.
        let e: types::func_event = unsafe { std::mem::zeroed() };
        assert_eq!(e.args.len(), FUNC_MAX_ARGS);
        assert_eq!(std::mem::size_of::<types::func_event>() % 8, 0);
    }
}
