//! The tracepoint tracer: one generic program attached to any classic tracepoint, its
//! record copied as the tracepoint's format file lays it out and decoded in user space.

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::Link;
use serde_json::{Map, Value};

use crate::core::abi::{types::task_hdr, STR_LEN};
use crate::core::scope::Scope;
use crate::model::task::Head;
use crate::resolve::tracefs_format::{self, Format};

use super::skel::{types::tp_str_kind, Tp, TracepointSkelBuilder, TP_MAX_STRS, TP_RAW_MAX};

/// Ring buffer between the kernel and btrace (a power of two, in bytes).
pub const RINGBUF_BYTES: u32 = 4 << 20;

/// What the kernel program copies for one tracepoint.
pub struct Layout {
    pub raw_size: usize,
    /// (offset, kind) of each field whose string the program reads, in field order.
    pub strings: Vec<(u16, u8)>,
}

pub fn layout(format: &Format) -> Layout {
    let strings = format
        .fields
        .iter()
        .filter(|f| f.needs_kernel_string())
        .take(TP_MAX_STRS)
        .map(|f| {
            let kind = match f.kind {
                tracefs_format::Kind::StrPtr => tp_str_kind::TP_STR_PTR.0 as u8,
                tracefs_format::Kind::DataLocStr { relative: false } => {
                    tp_str_kind::TP_STR_DATA_LOC.0 as u8
                }
                _ => tp_str_kind::TP_STR_REL_LOC.0 as u8,
            };
            (f.offset as u16, kind)
        })
        .collect();
    Layout {
        raw_size: format.fixed_size.min(TP_RAW_MAX),
        strings,
    }
}

/// Unknown tracepoints get the nearest existing names as a hint.
pub fn unknown_tracepoint(tracefs: &std::path::Path, cat: &str, name: &str) -> anyhow::Error {
    let wanted = format!("{cat}:{name}");
    let events = std::fs::read_to_string(tracefs.join("available_events")).unwrap_or_default();
    let mut near: Vec<(f64, &str)> = events
        .lines()
        .map(|e| (strsim::jaro_winkler(e, &wanted), e))
        .filter(|(score, _)| *score > 0.85)
        .collect();
    near.sort_by(|a, b| b.0.total_cmp(&a.0));
    let hint = match near.first() {
        Some((_, e)) => format!("; did you mean {e}?"),
        None => format!(
            "; the list is in {}",
            tracefs.join("available_events").display()
        ),
    };
    anyhow::anyhow!("unknown tracepoint '{wanted}'{hint}")
}

/// Opens, configures, loads and attaches the program for one tracepoint.
pub fn load(cat: &str, name: &str, layout: &Layout, scope: &Scope) -> Result<(Tp, Vec<Link>)> {
    let tp = Tp::new(|storage| {
        let mut open = TracepointSkelBuilder::default().open(storage)?;
        {
            let ro = open
                .maps
                .rodata_data
                .as_deref_mut()
                .expect("tracepoint has rodata");
            ro.tp_raw_size = layout.raw_size as u32;
            ro.tp_n_strs = layout.strings.len() as u32;
            for (i, &(off, kind)) in layout.strings.iter().enumerate() {
                ro.tp_str_off[i] = off;
                ro.tp_str_kind[i] = kind;
            }
        }
        crate::apply_scope!(open, scope, true);
        open.maps.events.set_max_entries(RINGBUF_BYTES)?;
        let tp = open.load()?;
        scope.install(&tp.maps.scope_cgroups)?;
        Ok(tp)
    })?;
    let mut links = crate::core::scope::attach_tree(tp.object())?;
    let link = tp
        .progs
        .tp_record
        .attach_tracepoint(libbpf_rs::TracepointCategory::Custom(cat.to_string()), name)
        .with_context(|| format!("attaching to tracepoint {cat}:{name}"))?;
    links.push(link);
    scope.seed(&tp.maps.scope_procs)?;
    Ok((tp, links))
}

/// One event as it came from the kernel.
pub struct TpEvent {
    pub head: Head,
    pub raw: Vec<u8>,
    pub strings: Vec<String>,
}

pub fn decode_record(data: &[u8], raw_size: usize, n_strs: usize) -> Option<TpEvent> {
    let hdr_len = std::mem::size_of::<task_hdr>();
    let hdr: &task_hdr = plain::from_bytes(data.get(..hdr_len)?).ok()?;
    let raw = data.get(hdr_len..hdr_len + raw_size)?.to_vec();
    let strings = (0..n_strs)
        .map(|i| {
            let at = hdr_len + raw_size + i * STR_LEN;
            data.get(at..at + STR_LEN)
                .map(tracefs_format::c_string)
                .unwrap_or_default()
        })
        .collect();
    Some(TpEvent {
        head: Head::from_hdr(hdr),
        raw,
        strings,
    })
}

/// The decoded fields of a record, by name in record order.
pub fn decode_args(format: &Format, ev: &TpEvent) -> Map<String, Value> {
    let mut args = Map::new();
    let mut string_no = 0;
    for f in &format.fields {
        let v = tracefs_format::decode(f, &ev.raw, &ev.strings, string_no);
        if f.needs_kernel_string() {
            string_no += 1;
        }
        args.insert(f.name.clone(), v);
    }
    args
}

/// Whether this command works here: the real program attached to a tracepoint every
/// kernel has (for `btrace doctor`).
pub fn check() -> Result<String> {
    let (cat, name) = ("sched", "sched_process_exec");
    let tracefs = crate::core::system::ensure_tracefs()?;
    let format = tracefs_format::read(&tracefs, cat, name)?;
    let (_tp, _link) = load(cat, name, &layout(&format), &Scope::default())?;
    Ok(format!("attached to {cat}:{name}"))
}
