//! `btrace tracepoint CATEGORY:NAME`: every hit of a classic tracepoint as an event, its
//! fields decoded from the tracepoint's format file.

use anyhow::{bail, Context, Result};
use clap::Args;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::Link;
use serde_json::{json, Map, Value};

use crate::attach;
use crate::events::{pump, EventStream};
use crate::output::Output;
use crate::session::{Session, TraceArgs};
use crate::stream_out::{self, Head};
use crate::task_filter::{comm_text, TaskFilter, TaskFilterArgs};
use crate::tracefs_format::{self, Format};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/tracepoint.skel.rs"));
}
use skel::{types, TracepointSkel, TracepointSkelBuilder};

/// Must match btrace.h.
const TP_RAW_MAX: usize = 1024;
const TP_MAX_STRS: usize = 4;
const STR_LEN: usize = 256;
const TP_STR_PTR: u8 = 0;
const TP_STR_DATA_LOC: u8 = 1;
const TP_STR_REL_LOC: u8 = 2;

/// Ring buffer between the kernel and btrace (a power of two, in bytes).
pub const RINGBUF_BYTES: u32 = 4 << 20;

#[derive(Args, Debug, Clone)]
pub struct TracepointArgs {
    /// The tracepoint, as CATEGORY:NAME (e.g. syscalls:sys_enter_openat; see
    /// /sys/kernel/tracing/available_events)
    #[arg(value_name = "CATEGORY:NAME")]
    pub tracepoint: String,
    #[command(flatten)]
    pub filter: TaskFilterArgs,
    #[command(flatten)]
    pub common: TraceArgs,
}

/// `cat:name` (or `cat/name`) split in two.
pub fn split_name(s: &str) -> Result<(&str, &str)> {
    let (cat, name) = s
        .split_once(':')
        .or_else(|| s.split_once('/'))
        .filter(|(c, n)| !c.is_empty() && !n.is_empty() && !n.contains([':', '/']))
        .with_context(|| format!("'{s}' is not CATEGORY:NAME (e.g. syscalls:sys_enter_openat)"))?;
    Ok((cat, name))
}

/// What the kernel program copies for one tracepoint.
struct Layout {
    raw_size: usize,
    /// (offset, kind) of each field whose string the program reads, in field order.
    strings: Vec<(u16, u8)>,
}

fn layout(format: &Format) -> Layout {
    let strings = format
        .fields
        .iter()
        .filter(|f| f.needs_kernel_string())
        .take(TP_MAX_STRS)
        .map(|f| {
            let kind = match f.kind {
                tracefs_format::Kind::StrPtr => TP_STR_PTR,
                tracefs_format::Kind::DataLocStr { relative: false } => TP_STR_DATA_LOC,
                _ => TP_STR_REL_LOC,
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
fn unknown_tracepoint(tracefs: &std::path::Path, cat: &str, name: &str) -> anyhow::Error {
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
fn load(
    cat: &str,
    name: &str,
    layout: &Layout,
    filter: &TaskFilter,
) -> Result<(TracepointSkel<'static>, Link)> {
    let mut open = TracepointSkelBuilder::default().open(attach::skel_storage())?;
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
        ro.filter_tgid = filter.tgid;
        ro.filter_tid = filter.tid;
        ro.filter_by_comm = filter.comm.is_some();
        ro.filter_comm = filter.comm_chars();
    }
    open.maps.events.set_max_entries(RINGBUF_BYTES)?;
    let skel = open.load()?;
    let link = skel
        .progs
        .tp_record
        .attach_tracepoint(libbpf_rs::TracepointCategory::Custom(cat.to_string()), name)
        .with_context(|| format!("attaching to tracepoint {cat}:{name}"))?;
    Ok((skel, link))
}

/// One event as it came from the kernel.
pub struct TpEvent {
    pub head: Head,
    pub raw: Vec<u8>,
    pub strings: Vec<String>,
}

fn decode_record(data: &[u8], raw_size: usize, n_strs: usize) -> Option<TpEvent> {
    let hdr_len = std::mem::size_of::<types::task_hdr>();
    let hdr: &types::task_hdr = plain::from_bytes(data.get(..hdr_len)?).ok()?;
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
        head: Head {
            ts_ns: hdr.ts_ns,
            pid: hdr.pid,
            tid: hdr.tid,
            comm: comm_text(&hdr.comm),
        },
        raw,
        strings,
    })
}

// SAFETY: a plain C struct of integers and chars, as generated from the object's BTF.
unsafe impl plain::Plain for types::task_hdr {}

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
pub fn probe() -> Result<String> {
    let (cat, name) = ("sched", "sched_process_exec");
    let tracefs = crate::system::ensure_tracefs()?;
    let format = tracefs_format::read(&tracefs, cat, name)?;
    let (_skel, _link) = load(cat, name, &layout(&format), &TaskFilter::default())?;
    Ok(format!("attached to {cat}:{name}"))
}

pub fn run(args: TracepointArgs) -> Result<()> {
    let c = &args.common;
    let (cat, name) = split_name(&args.tracepoint)?;
    if c.interval.is_some() {
        bail!("--interval does not apply to an event stream; use --duration");
    }
    crate::system::preflight()?;
    let tracefs = crate::system::ensure_tracefs()?;
    if !tracefs.join("events").join(cat).join(name).is_dir() {
        return Err(unknown_tracepoint(&tracefs, cat, name));
    }
    let format = tracefs_format::read(&tracefs, cat, name)?;
    let layout = layout(&format);
    let mut session = Session::new(c)?;
    let filter = TaskFilter::new(session.tgid(), &args.filter)?;
    let (skel, _link) = load(cat, name, &layout, &filter)
        .map_err(|e| anyhow::anyhow!("cannot trace {cat}:{name}: {}", attach::describe(&e)))?;
    let shown = format!("{cat}:{name}");
    let (raw_size, n_strs) = (layout.raw_size, layout.strings.len());
    let stream = EventStream::new(&skel.maps.events, move |d| {
        decode_record(d, raw_size, n_strs)
    })?;
    let mut out = Output::new(c.json);
    if !out.json {
        out.line(&stream_out::text_header("TRACEPOINT"))?;
        out.flush()?;
    }
    let start_ns = crate::system::monotonic_ns();
    session.attached(&shown)?;
    let (end, events, lost) = pump(
        &mut session,
        &stream,
        &mut out,
        &skel.maps.losses,
        |out, ev| {
            let fields = decode_args(&format, &ev);
            if out.json {
                let mut rec = stream_out::json_head(&ev.head);
                rec.insert("tracepoint".into(), shown.clone().into());
                rec.insert("args".into(), Value::Object(fields));
                out.record(&Value::Object(rec))?;
            } else {
                out.line(&stream_out::text_line(
                    &ev.head, start_ns, &shown, &fields, "",
                ))?;
            }
            Ok(true)
        },
    )?;
    let secs = session.elapsed().as_secs_f64();
    if out.json {
        out.record(&session.summary(
            end,
            json!({
                "tracepoint": shown, "events": events, "lost": lost.ringbuf,
            }),
        ))?;
    } else {
        out.line(&format!(
            "Traced {shown} for {secs:.1} s: {events} events, {} lost (ring buffer full).",
            lost.ringbuf
        ))?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            split_name("syscalls:sys_enter_openat").unwrap(),
            ("syscalls", "sys_enter_openat")
        );
        assert_eq!(
            split_name("sched/sched_switch").unwrap(),
            ("sched", "sched_switch")
        );
        assert!(split_name("sched").is_err());
        assert!(split_name(":x").is_err());
        assert!(split_name("a:b:c").is_err());
    }

    #[test]
    fn kernel_and_user_constants_agree() {
        let ro: types::rodata = unsafe { std::mem::zeroed() };
        assert_eq!(ro.tp_str_off.len(), TP_MAX_STRS);
        assert_eq!(std::mem::size_of::<types::task_hdr>(), 32);
    }
}
