// SPDX-License-Identifier: Apache-2.0
//! Decoding a function tracer's events (func.h's layout, taken from the shared ABI
//! skeleton, model::abi) and reading the latency histogram of `--hist`.

use anyhow::Result;
use libbpf_rs::MapCore;

use super::plan::{Plan, EVENT_BYTES, FUNC_MAX_ARGS, RAW};
use crate::core::slots;
use crate::model::abi::types;
use crate::model::histogram::Log2Hist;
use crate::model::task::Head;
use crate::model::value::{Field, Val};
use crate::resolve::btf::{self, ValueKind};

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
