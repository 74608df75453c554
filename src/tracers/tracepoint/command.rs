// SPDX-License-Identifier: Apache-2.0
//! `btrace tracepoint CATEGORY:NAME`: every hit of a classic tracepoint as an event, its
//! fields decoded from the tracepoint's format file.

use anyhow::{Context, Result};
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::{json, Value};

use crate::core::event_out::{HeadArgs, Heads};
use crate::core::output::Output;
use crate::core::scope::{Scope, ScopeArgs};
use crate::core::session::{Closing, Session, TraceArgs};
use crate::core::slots::StringArgs;
use crate::core::stacks::{EventStackArgs, EventStacks};
use crate::core::stream::{pump, EventStream};
use crate::model::value::{json_args, Marks};
use crate::resolve::btf::BtfTypes;
use crate::resolve::tracefs_format;

use super::tracer::{self, decode_record, unknown_tracepoint, Decoder};

#[derive(Args, Debug, Clone)]
pub struct TracepointArgs {
    /// The tracepoint, as CATEGORY:NAME (e.g. syscalls:sys_enter_openat; see
    /// /sys/kernel/tracing/available_events)
    #[arg(value_name = "CATEGORY:NAME")]
    pub tracepoint: String,
    #[command(flatten)]
    pub strings: StringArgs,
    #[command(flatten)]
    pub stack: EventStackArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub heads: HeadArgs,
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

pub fn run(args: TracepointArgs) -> Result<i32> {
    let c = &args.common;
    let (cat, name) = split_name(&args.tracepoint)?;
    crate::core::system::preflight()?;
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
    let mut session = Session::new(c, None)?;
    let scope = Scope::new(session.tgid(), &args.scope)?;
    let (tp, _link) = tracer::load(cat, name, &decoder.layout, &scope).map_err(|e| {
        anyhow::anyhow!(
            "cannot trace {cat}:{name}: {}",
            crate::core::attach::describe(&e)
        )
    })?;
    let shown = format!("{cat}:{name}");
    let mut stream = EventStream::new(&tp.maps.events, decode_record)?;
    let mut out = Output::to(c.json, c.output.as_deref())?;
    let mut heads = Heads::new(&args.heads);
    if !out.json {
        out.line(&heads.text_header("TRACEPOINT"))?;
        out.flush()?;
    }
    let start_ns = crate::core::system::monotonic_ns();
    session.attached(&shown)?;
    let (end, events, lost) = pump(
        &mut session,
        &mut stream,
        &mut out,
        &tp.maps.losses,
        tp.object(),
        |out, ev| {
            let fields = decoder.fields(&ev);
            let sides = match (&mut stacks, decoder.layout.stack_off) {
                (Some(es), Some(off)) => es.event(&ev.rec, off, &ev.head),
                _ => None,
            };
            if out.json {
                let mut rec = heads.json(&ev.head);
                rec.insert("tracepoint".into(), shown.clone().into());
                let mut marks = Marks::default();
                rec.insert("args".into(), Value::Object(json_args(&fields, &mut marks)));
                marks.insert_into(&mut rec);
                if let Some(sides) = &sides {
                    EventStacks::insert_json(&mut rec, sides);
                }
                out.record(&Value::Object(rec))?;
            } else {
                out.line(&heads.text_line(&ev.head, start_ns, &shown, &fields, ""))?;
                if let Some(sides) = &sides {
                    for l in EventStacks::text_lines(sides) {
                        out.line(&l)?;
                    }
                }
            }
            Ok(true)
        },
    )?;
    let mut specific = json!({ "tracepoint": shown });
    if let Some(es) = &stacks {
        let sl = es.losses(&tp.maps.stack_losses)?;
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
            what: &shown,
            hook: "tracepoint",
            counted: Some(("events", events)),
            losses: lost,
            specific,
        },
    )
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
