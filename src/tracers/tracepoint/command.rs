// SPDX-License-Identifier: Apache-2.0
//! `btrace tracepoint CATEGORY:NAME`: every hit of a classic tracepoint as an event, its
//! fields decoded from the tracepoint's format file.

use anyhow::{Context, Result};
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::json;

use crate::core::event_out::Heads;
use crate::core::output::OutputArgs;
use crate::core::run::{self, Checked, EventArgs, Events};
use crate::core::scope::Scope;
use crate::core::slots::StringArgs;
use crate::core::stacks::{EventStackArgs, EventStacks};
use crate::core::stream::EventStream;
use crate::model::json_write as jw;
use crate::model::value::{write_json_args, JsonMarks};
use crate::resolve::btf::BtfTypes;
use crate::resolve::tracefs_format;

use super::tracer::{self, record_head, unknown_tracepoint, Decoder};

#[derive(Args, Debug, Clone)]
pub struct TracepointArgs {
    #[command(flatten)]
    pub common: EventArgs,
    /// The tracepoint, as CATEGORY:NAME (e.g. syscalls:sys_enter_openat; see
    /// /sys/kernel/tracing/available_events)
    #[arg(value_name = "CATEGORY:NAME")]
    pub tracepoint: String,
    #[command(flatten)]
    pub strings: StringArgs,
    #[command(flatten)]
    pub stack: EventStackArgs,
    /// The bench's drain floor (testing builds): take every record from the ring buffer
    /// and count it, decode and print nothing but the summary
    #[cfg(feature = "testing")]
    #[arg(long, hide = true)]
    pub drain_floor: bool,
}

impl TracepointArgs {
    fn drain_floor(&self) -> bool {
        #[cfg(feature = "testing")]
        return self.drain_floor;
        #[cfg(not(feature = "testing"))]
        false
    }
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

pub fn run(args: TracepointArgs, sink: &OutputArgs) -> Result<i32> {
    let (cat, name) = split_name(&args.tracepoint)?;
    let checked = Checked::system()?;
    let tracefs = crate::core::system::ensure_tracefs()?;
    if !tracefs.join("events").join(cat).join(name).is_dir() {
        return Err(unknown_tracepoint(&tracefs, cat, name));
    }
    // Field types, typedefs and enumerators from the kernel's BTF; the decode tables are
    // built here, once.
    let types = BtfTypes::vmlinux()?;
    let format = tracefs_format::read(&tracefs, cat, name, &types)?;
    let mut decoder = Decoder::new(format, args.strings.string_size, &types);
    if args.stack.stack {
        decoder.layout.add_stacks();
    }
    let mut stacks = args.stack.stack.then(EventStacks::new);
    drop(types);
    crate::core::stream::check_ring_fits(args.common.ring.bytes(), decoder.layout.rec_size)?;
    let session = checked.start(&args.common.trace, sink, None)?;
    let scope = Scope::new(session.tgid(), &args.common.scope)?;
    let (tp, _link) = tracer::load(cat, name, &decoder.layout, &scope, args.common.ring.bytes())
        .map_err(|e| {
            crate::core::kmem::unless_too_big(e, |e| {
                anyhow::anyhow!(
                    "cannot trace {cat}:{name}: {}",
                    crate::core::attach::describe(&e)
                )
            })
        })?;
    let shown = format!("{cat}:{name}");
    let mut stream = EventStream::raw(&tp.maps.events)?;
    let mut heads = Heads::new(&args.common.heads);
    let header = heads.text_header("TRACEPOINT");
    let start_ns = crate::core::system::monotonic_ns();
    let drain_floor = args.drain_floor();
    // Kept from record to record: each is written straight into the output's buffer.
    let mut fields = Vec::new();
    let mut marks = JsonMarks::default();
    let events = Events::new(&shown, "tracepoint", &header, &tp.maps.losses, tp.object());
    let mut ended = run::stream_records(session, events, &mut stream, |out, rec| {
        if drain_floor {
            return Ok(true);
        }
        let Some(head) = record_head(rec) else {
            return Ok(false);
        };
        fields.clear();
        decoder.fields_into(rec, &mut fields);
        let sides = match (&mut stacks, decoder.layout.stack_off) {
            (Some(es), Some(off)) => es.event(rec, off, &head),
            _ => None,
        };
        let json = out.json;
        let buf = out.buf();
        if json {
            heads.write_json(&head, buf);
            jw::next_key(buf, "tracepoint");
            jw::str(buf, &shown);
            jw::next_key(buf, "args");
            write_json_args(&fields, buf, &mut marks);
            marks.write_into(buf);
            if let Some(sides) = &sides {
                EventStacks::write_json(buf, sides, true)?;
            }
            buf.push(b'}');
            out.end_line()?;
        } else {
            heads.write_text_line(&head, start_ns, &shown, &fields, "", buf);
            out.end_line()?;
            if let Some(sides) = &sides {
                for l in EventStacks::text_lines(sides) {
                    out.line(&l)?;
                }
            }
        }
        Ok(true)
    })?;
    let mut specific = json!({ "tracepoint": shown });
    if let Some(es) = &stacks {
        let sl = es.losses(&tp.maps.stack_losses)?;
        if ended.out().json {
            specific["stack_losses"] = sl.json();
        } else {
            ended.out().line(&sl.text())?;
        }
    }
    ended.close(specific)
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
}
