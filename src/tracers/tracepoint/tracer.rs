// SPDX-License-Identifier: Apache-2.0
//! The tracepoint tracer: one generic program attached to any classic tracepoint, its
//! record copied as the tracepoint's format file lays it out and decoded in user space.

use anyhow::{Context, Result};
use libbpf_rs::Link;

use crate::core::attach::Links;
use crate::core::kmem::Driver;
use crate::core::lifecycle::{self, Declaration, Tree};
use crate::core::rodata;
use crate::core::scope::Scope;
use crate::core::slots;
use crate::model::abi::{types::task_hdr, STR_SIZE_DEFAULT};
use crate::model::task::HeadRef;
use crate::model::value::{Field, Val};
use crate::resolve::ctype::{unqualified, KernelTypes};
use crate::resolve::kallsyms::Kallsyms;
use crate::resolve::print_fmt::{self, Render};
use crate::resolve::tracefs_format::{self, Format, Kind};

use super::skel::{
    types::tp_slot_kind, OpenTracepointSkel, Tp, TracepointKind, TracepointSkel, TP_MAX_SLOTS,
    TP_RAW_MAX,
};

/// One field the kernel program reads into a slot of the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotPlan {
    /// Index of the field in [`Format::fields`].
    pub field: usize,
    /// enum tp_slot_kind.
    pub kind: u8,
    /// The field's offset in the tracepoint's record.
    pub field_off: u16,
    /// A buffer's length field: offset, width, signedness.
    pub len: Option<(u16, u8, bool)>,
    /// The slot's offset in our record.
    pub off: usize,
}

/// What the kernel program copies for one tracepoint, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Bytes of the tracepoint's fixed record copied.
    pub raw_size: usize,
    /// Bytes kept of a string (--string-size).
    pub str_size: usize,
    pub slots: Vec<SlotPlan>,
    /// Bytes of a whole record: task header, fixed record, slots, stacks.
    pub rec_size: usize,
    /// --stack: where both stacks are (struct stack_slot).
    pub stack_off: Option<usize>,
}

impl Layout {
    /// Room for both stacks of the task (--stack) after the slots.
    pub fn add_stacks(&mut self) {
        let off = self.rec_size.next_multiple_of(8);
        self.stack_off = Some(off);
        self.rec_size = off + std::mem::size_of::<crate::model::abi::types::stack_slot>();
    }
}

pub fn layout(format: &Format, str_size: usize) -> Layout {
    let raw_size = format.fixed_size.min(TP_RAW_MAX);
    let mut off = (std::mem::size_of::<task_hdr>() + raw_size).next_multiple_of(8);
    let mut plans = Vec::new();
    for (i, f) in format.fields.iter().enumerate() {
        if !f.needs_slot() || plans.len() == TP_MAX_SLOTS {
            continue;
        }
        let (kind, bytes) = match f.kind {
            Kind::StrPtr => (tp_slot_kind::TP_SLOT_STR_PTR, slots::slot_bytes(str_size)),
            Kind::DataLocStr { relative: false } => {
                (tp_slot_kind::TP_SLOT_DATA_LOC, slots::slot_bytes(str_size))
            }
            Kind::DataLocStr { relative: true } => {
                (tp_slot_kind::TP_SLOT_REL_LOC, slots::slot_bytes(str_size))
            }
            Kind::Buffer { .. } => (tp_slot_kind::TP_SLOT_BUF, slots::slot_bytes(str_size)),
            _ => (tp_slot_kind::TP_SLOT_ARGV, slots::list_slot_bytes(str_size)),
        };
        let len = match f.kind {
            Kind::Buffer { len } => {
                let l = &format.fields[len];
                match l.kind {
                    Kind::Int { signed, width } => Some((l.offset as u16, width as u8, signed)),
                    _ => None,
                }
            }
            _ => None,
        };
        plans.push(SlotPlan {
            field: i,
            kind: kind.0 as u8,
            field_off: f.offset as u16,
            len,
            off,
        });
        off += bytes;
    }
    Layout {
        raw_size,
        str_size,
        slots: plans,
        rec_size: off,
        stack_off: None,
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

/// One tracepoint's load as core::lifecycle drives it.
struct TracepointLoad<'a> {
    cat: &'a str,
    name: &'a str,
    layout: &'a Layout,
    scope: &'a Scope,
    ring_bytes: u32,
}

impl Declaration for TracepointLoad<'_> {
    type Kind = TracepointKind;
    /// One way: the classic tracepoint.
    type Way = ();
    const DRIVERS: &'static [Driver] = &[crate::core::kmem::RING];
    // The user's program first: on a tracepoint the scope's tree programs also use
    // (sched_process_exit, sched_process_fork), the programs run in the order they were
    // attached, and the scope's exit program takes the process out of the tree; attached
    // before, it hid every exit of the traced tree from `tracepoint
    // sched:sched_process_exit`. Nothing runs in scope before the gate opens, so the tree
    // misses nothing by it.
    const TREE: Tree = Tree::Last;

    fn scope(&self) -> &Scope {
        self.scope
    }

    fn configure(&self, _way: (), open: &mut OpenTracepointSkel<'_>) -> Result<()> {
        let (layout, ring_bytes) = (self.layout, self.ring_bytes);
        {
            let ro = rodata::typed(&mut open.maps.rodata_data);
            ro.rb_wake_bytes = crate::core::stream::wake_bytes(ring_bytes);
            ro.rb_wake_gap_ns = crate::core::stream::WAKE_GAP_NS;
            ro.tp_raw_size = layout.raw_size as u32;
            ro.tp_rec_size = layout.rec_size as u32;
            ro.tp_n_slots = layout.slots.len() as u32;
            ro.str_size = layout.str_size as u32;
            ro.str_slot_bytes = slots::slot_bytes(layout.str_size) as u32;
            if let Some(off) = layout.stack_off {
                ro.tp_want_stack = true;
                ro.tp_stack_off = off as u32;
            }
            for (i, s) in layout.slots.iter().enumerate() {
                ro.tp_field_off[i] = s.field_off;
                ro.tp_slot_kind[i] = s.kind;
                ro.tp_slot_off[i] = s.off as u32;
                if let Some((off, width, signed)) = s.len {
                    ro.tp_len_off[i] = off;
                    ro.tp_len_size[i] = width;
                    ro.tp_len_signed[i] = signed;
                }
            }
        }
        open.maps.events.set_max_entries(ring_bytes)?;
        Ok(())
    }

    fn hooks(&self, _way: (), tp: &TracepointSkel<'_>, links: &mut Links) -> Result<()> {
        let (cat, name) = (self.cat, self.name);
        let link = tp
            .progs
            .tp_record
            .attach_tracepoint(libbpf_rs::TracepointCategory::Custom(cat.to_string()), name)
            .with_context(|| format!("attaching to tracepoint {cat}:{name}"))?;
        links.push(link);
        Ok(())
    }
}

/// Opens, configures, loads and attaches the program for one tracepoint.
/// `ring_bytes`: the ring buffer's size (a power of two of pages).
pub fn load(
    cat: &str,
    name: &str,
    layout: &Layout,
    scope: &Scope,
    ring_bytes: u32,
) -> Result<(Tp, Vec<Link>)> {
    let decl = TracepointLoad {
        cat,
        name,
        layout,
        scope,
        ring_bytes,
    };
    let (tp, links) = lifecycle::load_way(&decl, ())?;
    Ok((tp, links.into_vec()))
}

/// Who: the task header a record starts with, read in place (None for a record too
/// short for it).
pub fn record_head(rec: &[u8]) -> Option<HeadRef<'_>> {
    let hdr: &task_hdr = plain::from_bytes(rec.get(..std::mem::size_of::<task_hdr>())?).ok()?;
    Some(HeadRef::from_hdr(hdr))
}

/// Everything fixed for one tracepoint, built once: its format, where the kernel puts
/// each field, and the names its values are shown by.
pub struct Decoder {
    pub format: Format,
    pub layout: Layout,
    /// Per field: the slot holding its value, if it has one.
    slot_of: Vec<Option<usize>>,
    /// Per field: how it is shown by name, if it is.
    renders: Vec<Option<Render>>,
    kallsyms: Option<Kallsyms>,
}

impl Decoder {
    pub fn new(format: Format, str_size: usize, types: &dyn KernelTypes) -> Decoder {
        let layout = layout(&format, str_size);
        let mut slot_of = vec![None; format.fields.len()];
        for (i, s) in layout.slots.iter().enumerate() {
            slot_of[s.field] = Some(i);
        }
        let from_fmt = print_fmt::renders(&format.print_fmt, types);
        let renders: Vec<Option<Render>> = format
            .fields
            .iter()
            .map(|f| {
                if let Some((_, r)) = from_fmt.iter().find(|(n, _)| *n == f.name) {
                    return Some(r.clone());
                }
                if !matches!(f.kind, Kind::Int { .. }) {
                    return None;
                }
                if unqualified(&f.c_type) == "dev_t" {
                    return Some(Render::DevT);
                }
                types.enum_names(&f.c_type).map(Render::Symbolic)
            })
            .collect();
        let kallsyms = renders
            .iter()
            .any(|r| matches!(r, Some(Render::KernelSym { .. })))
            .then(Kallsyms::load)
            .and_then(Result::ok);
        Decoder {
            format,
            layout,
            slot_of,
            renders,
            kallsyms,
        }
    }

    /// The fields of one record (as the kernel wrote it), by name in record order,
    /// appended to `out` (kept from record to record, so no allocation is made for them).
    pub fn fields_into<'d>(&'d self, rec: &[u8], out: &mut Vec<Field<'d>>) {
        let hdr_len = std::mem::size_of::<task_hdr>();
        let raw = rec
            .get(hdr_len..hdr_len + self.layout.raw_size)
            .unwrap_or_default();
        let size = self.layout.str_size;
        out.extend(self.format.fields.iter().enumerate().map(|(i, f)| {
            let slotted = self.slot_of[i].and_then(|s| {
                let off = self.layout.slots[s].off;
                match f.kind {
                    Kind::StrList => {
                        let (items, flags) = slots::read_list(rec, off, size)?;
                        slots::list_val(&items, flags)
                    }
                    _ => slots::read(rec, off, size)?.val(),
                }
            });
            let val = match (slotted, &f.kind) {
                (Some(v), _) => v,
                (None, Kind::DataLocStr { .. }) if self.slot_of[i].is_some() => Val::Missing,
                (None, _) => tracefs_format::decode(f, raw),
            };
            self.named(i, f, val)
        }));
    }

    /// A value shown by the name the kernel gives it, with the number kept as raw.
    fn named<'a>(&self, i: usize, f: &'a tracefs_format::Field, val: Val) -> Field<'a> {
        let name = match (&self.renders[i], &val) {
            (Some(r), Val::Int(v)) => r.int(*v as u64, self.kallsyms.as_ref()),
            (Some(r), Val::UInt(v) | Val::Hex(v)) => r.int(*v, self.kallsyms.as_ref()),
            (Some(r), Val::HexBytes(b)) => r.bytes(b),
            _ => None,
        };
        match name {
            Some(n) => Field {
                name: &f.name,
                val: Val::Name(n),
                raw: Some(val),
            },
            None => Field::plain(&f.name, val),
        }
    }
}

/// Whether this command works here: the real program attached to a tracepoint every
/// kernel has (for `btrace doctor`).
pub fn check() -> Result<String> {
    let (cat, name) = ("sched", "sched_process_exec");
    let tracefs = crate::core::system::ensure_tracefs()?;
    let types = crate::resolve::btf::BtfTypes::vmlinux()?;
    let format = tracefs_format::read(&tracefs, cat, name, &types)?;
    let (_tp, _link) = load(
        cat,
        name,
        &layout(&format, STR_SIZE_DEFAULT),
        &Scope::default(),
        crate::core::stream::RINGBUF_DEFAULT,
    )?;
    Ok(format!("attached to {cat}:{name}"))
}
