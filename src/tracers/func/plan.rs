// SPDX-License-Identifier: Apache-2.0
//! The plan of what to read of a call (src/bpf/include/func_probe.h does it in the kernel),
//! and setting it on an open skeleton before load.

use anyhow::Result;
use libbpf_rs::OpenObject;

use crate::core::lifecycle::open_map;
use crate::core::scope::Scope;
use crate::core::slots;
use crate::model::abi::types;
use crate::resolve::btf::{Proto, ValueKind};
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

pub(super) const RAW: ArgRead = ArgRead {
    how: types::arg_read::ARG_RAW.0 as u8,
    slot: 0,
    len: 0,
};

/// The maps of func_probe.h whose size a flag sets (core::kmem): the ring buffer, and the
/// calls in flight (entries of a whole event each, so --string-size and --stack weigh too).
pub const DRIVERS: &[crate::core::kmem::Driver] = &[
    crate::core::kmem::RING,
    crate::core::kmem::Driver::new("inflight", "--max-inflight"),
    crate::core::kmem::Driver::new("starts_hash", "--max-inflight"),
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

impl Plan {
    /// Sets what every function tracer's object shares (func_probe.h's rodata and maps),
    /// found by name in the open object: kprobe's and uprobe's skeletons each have their
    /// own types for them. `task_store`: --hist keeps its entry times in task storage.
    pub fn configure(&self, open: &mut OpenObject, task_store: bool) -> Result<()> {
        let task_store = self.hist && task_store;
        let (nr_args, str_size, ev_size) = (
            (self.nr_args() as u32).to_ne_bytes(),
            (self.str_size as u32).to_ne_bytes(),
            (self.ev_size() as u32).to_ne_bytes(),
        );
        let slot_bytes = (slots::slot_bytes(self.str_size) as u32).to_ne_bytes();
        let has_ret = [u8::from(self.ret_kind() != ValueKind::Void)];
        let (with_ret, hist_on, hist_task_store) = (
            [u8::from(self.needs_return())],
            [u8::from(self.hist)],
            [u8::from(task_store)],
        );
        let arg_read = self.reads.map(|r| r.how);
        let arg_slot = self.reads.map(|r| r.slot);
        let arg_len = self.reads.map(|r| r.len);
        let mut vars: Vec<(&str, &[u8])> = vec![
            ("nr_args", &nr_args),
            ("has_ret", &has_ret),
            ("with_ret", &with_ret),
            ("hist_on", &hist_on),
            ("hist_task_store", &hist_task_store),
            ("str_size", &str_size),
            ("str_slot_bytes", &slot_bytes),
            ("ev_size", &ev_size),
            ("arg_read", &arg_read),
            ("arg_slot", &arg_slot),
            ("arg_len", &arg_len),
        ];
        let wake_bytes = crate::core::stream::wake_bytes(self.ring_bytes).to_ne_bytes();
        let wake_gap = crate::core::stream::WAKE_GAP_NS.to_ne_bytes();
        if !self.hist {
            vars.push(("rb_wake_bytes", &wake_bytes));
            vars.push(("rb_wake_gap_ns", &wake_gap));
        }
        let stack_off = self.stack_off().map(|off| (off as u32).to_ne_bytes());
        if let Some(off) = &stack_off {
            vars.push(("want_stack", &[1]));
            vars.push(("stack_off", off));
        }
        crate::core::rodata::write(open, &vars)?;
        let ev_size = self.ev_size() as u32;
        open_map(open, "events")?.set_max_entries(if self.hist {
            4096
        } else {
            self.ring_bytes
        })?;
        open_map(open, "scratch")?.set_value_size(ev_size)?;
        let mut inflight = open_map(open, "inflight")?;
        inflight.set_value_size(ev_size)?;
        inflight.set_max_entries(if self.with_ret && !self.hist {
            self.max_inflight
        } else {
            1
        })?;
        open_map(open, "starts_hash")?.set_max_entries(if self.hist && !task_store {
            self.max_inflight
        } else {
            1
        })?;
        open_map(open, "starts_task")?.set_autocreate(task_store)?;
        Ok(())
    }
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
