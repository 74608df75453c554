// SPDX-License-Identifier: Apache-2.0
//! What the function tracers (kprobe, uprobe, usdt) share: the plan of what to read of a
//! call (src/bpf/include/func_probe.h does it in the kernel), decoding its events, and
//! reading the latency histogram of `--hist`, the stacks of `--stack`. The event layout is
//! func.h's, taken from the shared ABI skeleton (core::abi).

use anyhow::Result;
use libbpf_rs::MapCore;
use serde_json::{json, Value};

use crate::core::event_out::{HeadArgs, Heads};
use crate::core::output::Output;
use crate::core::session::{Closing, Session, Step};
use crate::core::stacks::EventStacks;
use crate::core::stream::{pump, EventStream};
use crate::model::json_write as jw;
use crate::model::units::fmt_latency;
use crate::model::value::{write_json_args, JsonMarks};

use crate::core::abi::types;
use crate::core::scope::Scope;
use crate::core::slots;
use crate::model::histogram::Log2Hist;
use crate::model::task::Head;
use crate::model::value::{Field, Val};
use crate::resolve::btf::{self, Proto, ValueKind};
use crate::resolve::buffers::{self, Direction, Shape};

/// Arguments read at most.
pub const FUNC_MAX_ARGS: usize = types::func_limits::FUNC_MAX_ARGS.0 as usize;
/// Arguments read into string slots (strings, buffers) at most.
pub const FUNC_MAX_SLOTS: usize = types::func_limits::FUNC_MAX_SLOTS.0 as usize;
/// Bytes of the fixed part of an event.
pub const EVENT_BYTES: usize = std::mem::size_of::<types::func_event>();

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

/// The maps of func_probe.h whose size a flag sets (core::kmem): the ring buffer, and the
/// calls in flight (entries of a whole event each, so --string-size and --stack weigh too).
pub const DRIVERS: &[crate::core::kmem::Driver] = &[
    crate::core::kmem::RING,
    crate::core::kmem::Driver {
        map: "inflight",
        flag: "--max-inflight",
    },
    crate::core::kmem::Driver {
        map: "starts",
        flag: "--max-inflight",
    },
];

/// Everything fixed before load: the function, what to read of it, the filters.
#[derive(Debug)]
pub struct Plan {
    pub func: String,
    /// None when the function is in kallsyms but not in BTF (kprobe only, no arguments).
    pub proto: Option<Proto>,
    pub with_ret: bool,
    /// --hist: a latency histogram in the kernel, no events.
    pub hist: bool,
    /// Bound of the per-thread store of calls in progress (--ret, --hist).
    pub max_inflight: u32,
    pub scope: Scope,
    /// Bytes kept of a string or buffer (--string-size).
    pub str_size: usize,
    /// How each argument is read.
    pub reads: [ArgRead; FUNC_MAX_ARGS],
    /// --stack: both stacks at entry, after the string slots.
    pub stack: bool,
    /// The ring buffer's size (--buffer-size).
    pub ring_bytes: u32,
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
            hist: false,
            max_inflight,
            scope,
            str_size,
            reads: [RAW; FUNC_MAX_ARGS],
            stack: false,
            ring_bytes: crate::core::stream::RINGBUF_DEFAULT,
        };
        plan.reads = plan.arg_reads();
        plan
    }

    /// Whether the return is hooked (--ret, --hist).
    pub fn needs_return(&self) -> bool {
        self.with_ret || self.hist
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
            Some(off) => off + std::mem::size_of::<types::stack_slot>(),
            None => self.slots_end(),
        }
    }

    fn slots_end(&self) -> usize {
        EVENT_BYTES + self.n_slots() * slots::slot_bytes(self.str_size)
    }

    /// --stack: where the stacks are in an event (struct stack_slot), 8-aligned.
    pub fn stack_off(&self) -> Option<usize> {
        self.stack.then(|| self.slots_end().next_multiple_of(8))
    }

    /// Refuses a ring buffer (--buffer-size) one event does not fit in; --hist sends none.
    pub fn check_ring(&self) -> Result<()> {
        if self.hist {
            return Ok(());
        }
        crate::core::stream::check_ring_fits(self.ring_bytes, self.ev_size())
    }

    /// What the function returns; a function without a prototype has no known return.
    pub fn ret_kind(&self) -> ValueKind {
        self.proto
            .as_ref()
            .map_or(ValueKind::Void, |p| p.ret.clone())
    }
}

/// Sets what every function tracer's object shares (func_probe.h's rodata and maps) from
/// a [`Plan`], on an open skeleton before load.
#[macro_export]
macro_rules! func_configure {
    ($open:expr, $plan:expr, $task_store:expr) => {{
        let plan: &$crate::tracers::func::Plan = $plan;
        let task_store: bool = plan.hist && $task_store;
        {
            let ro = $crate::rodata_mut!($open);
            ro.nr_args = plan.nr_args() as u32;
            ro.has_ret = plan.ret_kind() != $crate::resolve::btf::ValueKind::Void;
            ro.with_ret = plan.needs_return();
            ro.hist_on = plan.hist;
            ro.hist_task_store = task_store;
            if !plan.hist {
                ro.rb_wake_bytes = $crate::core::stream::wake_bytes(plan.ring_bytes);
                ro.rb_wake_gap_ns = $crate::core::stream::WAKE_GAP_NS;
            }
            ro.str_size = plan.str_size as u32;
            ro.str_slot_bytes = $crate::core::slots::slot_bytes(plan.str_size) as u32;
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
        $crate::apply_scope!($open, &plan.scope, true);
        let m = &mut $open.maps;
        m.events
            .set_max_entries(if plan.hist { 4096 } else { plan.ring_bytes })?;
        m.scratch.set_value_size(plan.ev_size() as u32)?;
        m.inflight.set_value_size(plan.ev_size() as u32)?;
        m.inflight.set_max_entries(if plan.with_ret && !plan.hist {
            plan.max_inflight
        } else {
            1
        })?;
        m.starts.set_max_entries(if plan.hist && !task_store {
            plan.max_inflight
        } else {
            1
        })?;
        m.starts_task.set_autocreate(task_store)?;
    }};
}

/// Loads with --hist's entry times in task storage, else (the kernel does not let these
/// programs use it) in the bounded hash: `load(task_store)`, tried in that order.
pub fn with_store_fallback<T>(plan: &Plan, mut load: impl FnMut(bool) -> Result<T>) -> Result<T> {
    if plan.hist {
        if let Ok(loaded) = load(true) {
            return Ok(loaded);
        }
    }
    load(false)
}

/// The latency histogram of `--hist` so far (summed over CPUs).
pub fn read_latency(map: &dyn MapCore) -> Result<Log2Hist> {
    let cpus = crate::core::percpu::values::<types::hist>(map, 0)?;
    Ok(Log2Hist::sum_cpus(&cpus))
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
    let size = EVENT_BYTES;
    let e: &types::func_event = plain::from_bytes(data.get(..size)?).ok()?;
    let hdr = types::task_hdr {
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
                let off = EVENT_BYTES + r.slot as usize * slot_bytes;
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

/// The flags of `--ret`/`--hist`/`--stack` that need (or exclude) one another.
pub fn check_flags(
    ret: bool,
    hist: bool,
    stack: bool,
    max_inflight: Option<u32>,
    interval: &crate::core::session::IntervalArgs,
) -> Result<()> {
    if stack && hist {
        anyhow::bail!("--stack records the stacks of each event: --hist prints no events");
    }
    if max_inflight.is_some() && !ret && !hist {
        anyhow::bail!(
            "--max-inflight bounds the calls waiting for their return: it needs --ret or --hist"
        );
    }
    if interval.interval.is_some() && !hist {
        anyhow::bail!("-i prints a histogram per interval: it needs --hist");
    }
    Ok(())
}

/// What a function tracer's run prints and closes with.
pub struct Run<'a> {
    pub plan: &'a Plan,
    /// The function (or probe) as shown: `do_sys_openat2`, `libc:malloc`.
    pub what: &'a str,
    /// The hook it attached with (`fentry`, `uprobe`, `usdt`).
    pub hook: &'a str,
    /// Fields every event record carries after `func` and `hook` (e.g. the target file).
    pub extra: Vec<(&'static str, Value)>,
    /// The closing record's own fields.
    pub specific: Value,
    /// --stack has a kernel side (false for probes that fire in user mode: uprobe and
    /// usdt events carry only `user_stack`).
    pub kernel_stack: bool,
}

/// The loaded object and the maps a run reads.
pub struct RunMaps<'a> {
    pub events: &'a dyn MapCore,
    pub losses: &'a dyn MapCore,
    pub latency: &'a dyn MapCore,
    /// --stack: the stack walks' losses (stacks.h).
    pub stack_losses: &'a dyn MapCore,
    /// The loaded programs, whose runs the kernel skipped count as `lost.missed`.
    pub object: &'a libbpf_rs::Object,
}

/// The [`RunMaps`] of a loaded skeleton made from func_probe.h (kprobe, uprobe, usdt: the
/// same map names in each).
macro_rules! run_maps {
    ($skel:expr) => {
        $crate::tracers::func::RunMaps {
            events: &$skel.maps.events,
            losses: &$skel.maps.losses,
            latency: &$skel.maps.latency,
            stack_losses: &$skel.maps.stack_losses,
            object: $skel.object(),
        }
    };
}
pub(crate) use run_maps;

/// Streams every call as an event until the session ends, then closes.
pub fn stream_events(
    session: &mut Session,
    heads: &HeadArgs,
    run: &Run<'_>,
    maps: &RunMaps<'_>,
) -> Result<i32> {
    let plan = run.plan;
    let mut stream = EventStream::new(maps.events, decode_record)?;
    let mut out = session.output();
    let mut heads = Heads::new(heads);
    if !out.json {
        out.line(&heads.text_header("FUNCTION"))?;
        out.flush()?;
    }
    let start_ns = crate::core::system::monotonic_ns();
    let mut stacks = plan.stack.then(EventStacks::new);
    let mut marks = JsonMarks::default();
    session.attached(&format!("{} via {}", run.what, run.hook))?;
    let (end, events, lost) = pump(
        session,
        &mut stream,
        &mut out,
        maps.losses,
        maps.object,
        |out, ev| {
            let fields = decode_args(plan, &ev);
            let ret = plan.with_ret.then(|| decode_ret(plan, &ev)).flatten();
            let sides = match (&mut stacks, plan.stack_off()) {
                (Some(es), Some(off)) => es.event(&ev.rec, off, &ev.head.view()),
                _ => None,
            };
            if out.json {
                // Written straight into the output's buffer, no JSON tree built.
                let buf = out.buf();
                heads.write_json(&ev.head.view(), buf);
                jw::next_key(buf, "func");
                jw::str(buf, run.what);
                jw::next_key(buf, "hook");
                jw::str(buf, run.hook);
                for (k, v) in &run.extra {
                    jw::next_key(buf, k);
                    serde_json::to_writer(&mut *buf, v)?;
                }
                jw::next_key(buf, "args");
                write_json_args(&fields, buf, &mut marks);
                if let Some(r) = &ret {
                    jw::next_key(buf, "ret");
                    r.val.write_json(buf, r.name, &mut marks);
                    if let Some(raw) = &r.raw {
                        marks.add_raw(r.name, raw);
                    }
                }
                if plan.with_ret {
                    jw::next_key(buf, "latency_ns");
                    jw::int(buf, ev.latency_ns);
                }
                marks.write_into(buf);
                if let Some(sides) = &sides {
                    // a uprobe fires in user mode: it has no kernel stack to show
                    EventStacks::write_json(buf, sides, run.kernel_stack)?;
                }
                buf.push(b'}');
                out.end_line()?;
            } else {
                let mut tail = String::new();
                if let Some(r) = &ret {
                    tail = format!("ret={} ", r.val.text());
                }
                if plan.with_ret {
                    tail.push_str(&format!("lat={}", fmt_latency(ev.latency_ns)));
                }
                out.line(&heads.text_line(&ev.head, start_ns, run.what, &fields, &tail))?;
                if let Some(sides) = &sides {
                    for l in EventStacks::text_lines(sides) {
                        out.line(&l)?;
                    }
                }
            }
            Ok(true)
        },
    )?;
    let mut specific = run.specific.clone();
    if let Some(es) = &stacks {
        let sl = es.losses(maps.stack_losses)?;
        if out.json {
            specific["stack_losses"] = sl.json();
        } else {
            out.line(&sl.text())?;
        }
    }
    session.finish(
        &mut out,
        end,
        Closing {
            what: run.what,
            hook: run.hook,
            counted: Some(("events", events)),
            losses: lost,
            specific,
        },
    )
}

/// Runs the session, calling `print` at every interval and once at the end (an in-kernel
/// aggregate's report), then closes with the losses; `ending`: what was traced, the hook,
/// the closing record's own fields.
fn run_printing(
    session: &mut Session,
    mut out: Output,
    maps: &RunMaps<'_>,
    print: &mut dyn FnMut(&mut Output) -> Result<()>,
    ending: (&str, &str, Value),
) -> Result<i32> {
    let end = session.run(|step| {
        match step {
            Step::Poll(wait) => crate::core::session::sleep_unless_stopped(wait),
            Step::Interval => print(&mut out)?,
        }
        Ok(())
    })?;
    print(&mut out)?;
    let losses = crate::core::stream::LossWatch::default()
        .check(maps.losses, out.json)?
        .with_missed(maps.object)?;
    let (what, hook, specific) = ending;
    session.finish(
        &mut out,
        end,
        Closing {
            what,
            hook,
            counted: None,
            losses,
            specific,
        },
    )
}

/// `--hist`: the function's latency histogram, kept in the kernel, printed at the end (and
/// every interval with -i) as `hist` prints its histograms.
pub fn print_hists(session: &mut Session, run: &Run<'_>, maps: &RunMaps<'_>) -> Result<i32> {
    let out = session.output();
    session.attached(&format!("{} via {}", run.what, run.hook))?;
    let start = session.started();
    let mut number = 0u64;
    let mut start_s = 0.0;
    let mut last = Log2Hist::default();
    let per_interval = session.interval().is_some();
    let mut close = |out: &mut Output| -> Result<()> {
        let now = read_latency(maps.latency)?;
        let h = now.since(&last);
        let end_s = start.elapsed().as_secs_f64();
        if out.json {
            if per_interval {
                out.record(&json!({"type": "interval", "interval": number,
                    "start_s": start_s, "end_s": end_s, "calls": h.count}))?;
            }
            let mut rec = json!({"type": "hist", "func": run.what, "unit": "us",
                "count": h.count, "total": now.count, "sum_ns": h.sum_ns,
                "buckets": h.json_buckets()});
            if per_interval {
                rec["interval"] = number.into();
            }
            out.record(&rec)?;
        } else {
            if per_interval {
                out.line(&format!(
                    "--- interval {number}: {start_s:.3} s to {end_s:.3} s ---"
                ))?;
            }
            for row in h.text_block(&format!("@{}", run.what)) {
                out.line(&row)?;
            }
            out.line("")?;
        }
        out.flush()?;
        number += 1;
        start_s = end_s;
        last = now;
        Ok(())
    };
    let ending = (run.what, run.hook, run.specific.clone());
    run_printing(session, out, maps, &mut close, ending)
}

/// Functions (attach points) a glob with `--count` takes by default.
pub const DEFAULT_MAX_PROBES: usize = 1000;

/// `--count` and its bound, shared by `kprobe` and `uprobe`.
#[derive(clap::Args, Debug, Clone)]
pub struct CountArgs {
    /// Calls per function counted in the kernel (no event per call); FUNC may then be a
    /// glob (`tcp_*`, `malloc*`, `?alloc`)
    #[arg(long, conflicts_with_all = ["ret", "hist"])]
    pub count: bool,
    /// With --count: at most this many functions are probed at once (default 1000); a
    /// glob matching more is refused
    #[arg(long, value_name = "N")]
    pub max_probes: Option<usize>,
}

impl CountArgs {
    pub fn max_probes(&self) -> usize {
        self.max_probes.unwrap_or(DEFAULT_MAX_PROBES)
    }

    /// The flags that do not go with --count (or need it).
    pub fn check(&self, func: &str, max_inflight: Option<u32>, stack: bool) -> Result<()> {
        if !self.count {
            if self.max_probes.is_some() {
                anyhow::bail!("--max-probes bounds the functions a glob counts: it needs --count");
            }
            if is_glob(func) {
                anyhow::bail!(
                    "'{func}' is a glob: events and --hist are of one function, so a glob needs --count (calls per function)"
                );
            }
            return Ok(());
        }
        if max_inflight.is_some() {
            anyhow::bail!(
                "--max-inflight bounds the calls waiting for their return: --count has none"
            );
        }
        if stack {
            anyhow::bail!("--stack records the stacks of each event: --count prints no events");
        }
        if self.max_probes == Some(0) {
            anyhow::bail!("--max-probes 0 would probe nothing: give at least 1");
        }
        Ok(())
    }
}

/// Whether a function name is a glob (`*`, `?`).
pub fn is_glob(func: &str) -> bool {
    func.contains(['*', '?'])
}

/// The one line for a glob that matches more functions than --max-probes allows.
pub fn check_max_probes(pattern: &str, n: usize, of: &str, max: usize) -> Result<()> {
    if n > max {
        anyhow::bail!(
            "'{pattern}' matches {n} functions {of}: at most {max} are probed at once (--max-probes {max}); narrow the pattern, or raise --max-probes"
        );
    }
    Ok(())
}

/// Bound of the `counts` map for `n` attach points: one key each, with room to spare
/// (a kprobe function with two addresses; a full map is a counted loss anyway).
pub fn counts_entries(n: usize) -> u32 {
    (n * 2 + 16) as u32
}

/// Calls so far per function: every key of a counts map (summed over CPUs) under the
/// name `name_of` gives it, keys of one name added up.
pub fn read_counts(
    map: &dyn MapCore,
    name_of: &dyn Fn(u64) -> String,
) -> Result<std::collections::BTreeMap<String, u64>> {
    let mut by_name = std::collections::BTreeMap::new();
    for key in map.keys() {
        let Some(cpus) = map.lookup_percpu(&key, libbpf_rs::MapFlags::ANY)? else {
            continue;
        };
        let n: u64 = cpus
            .iter()
            .filter_map(|b| plain::from_bytes::<u64>(b).ok().copied())
            .sum();
        // A hash's u64 key (kprobe: the address), or an array's u32 index (uprobe).
        let k = match key.len() {
            8 => u64::from_ne_bytes(key[..].try_into().expect("8 bytes")),
            4 => u32::from_ne_bytes(key[..].try_into().expect("4 bytes")).into(),
            _ => continue,
        };
        if n == 0 {
            continue; // an array's slot of a function not called
        }
        *by_name.entry(name_of(k)).or_insert(0) += n;
    }
    Ok(by_name)
}

/// What a `--count` run prints and closes with.
pub struct CountRun<'a> {
    /// The pattern as given: `tcp_*`, `libc:malloc*`.
    pub what: &'a str,
    pub hook: &'a str,
    /// Functions probed.
    pub functions: usize,
    /// A note for the `Tracing` line (e.g. functions the kernel refused).
    pub note: String,
    /// The closing record's own fields.
    pub specific: Value,
}

/// `--count`: calls per function, counted in the kernel, printed at the end (and every -i
/// interval), busiest first. `name_of` names a key of the `counts` map.
pub fn print_counts(
    session: &mut Session,
    run: &CountRun<'_>,
    maps: &RunMaps<'_>,
    counts: &dyn MapCore,
    name_of: &dyn Fn(u64) -> String,
) -> Result<i32> {
    let out = session.output();
    let n = run.functions;
    let plural = if n == 1 { "" } else { "s" };
    session.attached(&format!(
        "{} ({n} function{plural}{}) via {}",
        run.what, run.note, run.hook
    ))?;
    let per_interval = session.interval().is_some();
    let mut last = std::collections::BTreeMap::<String, u64>::new();
    let mut number = 0u64;
    let mut print = |out: &mut Output| -> Result<()> {
        let now = read_counts(counts, name_of)?;
        let mut rows: Vec<(&String, u64, u64)> = now
            .iter()
            .map(|(f, t)| (f, t.saturating_sub(*last.get(f).unwrap_or(&0)), *t))
            .filter(|(_, d, _)| *d > 0)
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        if !out.json {
            if per_interval {
                out.line(&format!("--- interval {number} ---"))?;
            }
            out.line(&format!("{:<40} {:>12}", "FUNCTION", "CALLS"))?;
        }
        for (f, d, total) in &rows {
            if out.json {
                let mut rec = json!({"type": "count", "func": f, "count": d, "total": total});
                if per_interval {
                    rec["interval"] = number.into();
                }
                out.record(&rec)?;
            } else {
                out.line(&format!("{f:<40} {d:>12}"))?;
            }
        }
        if !out.json && rows.is_empty() {
            out.line("(no calls)")?;
        }
        out.flush()?;
        last = now;
        number += 1;
        Ok(())
    };
    let mut specific = run.specific.clone();
    specific["functions"] = n.into();
    run_printing(
        session,
        out,
        maps,
        &mut print,
        (run.what, run.hook, specific),
    )
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
    fn event_layout_matches_the_kernel() {
        // SAFETY: a plain struct of integers and chars, valid all zero.
        let e: types::func_event = unsafe { std::mem::zeroed() };
        assert_eq!(e.args.len(), FUNC_MAX_ARGS);
        assert_eq!(std::mem::size_of::<types::func_event>() % 8, 0);
    }
}
