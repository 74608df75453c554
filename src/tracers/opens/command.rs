// SPDX-License-Identifier: Apache-2.0
//! `btrace open`: every open, openat, openat2 and creat call, with its path, flags,
//! mode and result (file descriptor or error by name).

use anyhow::Result;
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::json;

use crate::core::event_out::Heads;
use crate::core::output::OutputArgs;
use crate::core::run::{self, Checked, EventArgs, Events};
use crate::core::scope::Scope;
use crate::core::slots::StringArgs;
use crate::model::value::JsonMarks;

use super::tracer::{self, Config, Hook, HOOKS};

#[derive(Args, Debug, Clone)]
pub struct OpenArgs {
    #[command(flatten)]
    pub common: EventArgs,
    #[command(flatten)]
    pub strings: StringArgs,
    /// Only calls that failed
    #[arg(long)]
    pub fails: bool,
    /// Only paths that start with P, as the program passed them (a relative path is not
    /// made absolute); filtered in the kernel
    #[arg(long, value_name = "P")]
    pub path_prefix: Option<String>,
    /// Bound of the per-thread store (threads that open files, alive at once; default:
    /// twice the threads alive now, at least 32768)
    #[arg(long, value_name = "N", value_parser = crate::tracers::hist::tracer::parse_max_threads)]
    pub max_threads: Option<u32>,
    /// Use only this hook, no fallback (default: the syscall tracepoints, else raw_tp)
    #[arg(long, value_enum)]
    pub hook: Option<Hook>,
}

pub fn run(args: OpenArgs, sink: &OutputArgs) -> Result<i32> {
    let prefix = args
        .path_prefix
        .as_deref()
        .map(tracer::parse_prefix)
        .transpose()?;
    let str_size = args.strings.string_size;
    if let Some(b) = args.common.ring.buffer_size {
        crate::core::stream::check_ring_fits(b, tracer::rec_size(str_size))?;
    }
    let session = Checked::system()?.start(&args.common.trace, sink, None)?;
    let cfg = Config {
        scope: Scope::new(session.tgid(), &args.common.scope)?,
        str_size,
        fails_only: args.fails,
        prefix,
        max_threads: args.max_threads,
        ring_bytes: args.common.ring.buffer_size,
    };
    let mut hooks = HOOKS.to_vec();
    hooks.retain(|h| args.hook.is_none_or(|want| *h == want));
    let (hook, obj, _links) = tracer::load_first(&hooks, &cfg)?;
    let mut stream = tracer::events(&obj, str_size)?;
    let mut heads = Heads::new(&args.common.heads);
    let header = heads.text_header("CALL");
    let start_ns = crate::core::system::monotonic_ns();
    let mut marks = JsonMarks::default();
    let what = match (&args.path_prefix, args.fails) {
        (Some(p), true) => format!("failed opens under {p}"),
        (Some(p), false) => format!("opens under {p}"),
        (None, true) => "failed opens".to_string(),
        (None, false) => "opens".to_string(),
    };
    let hook = hook.to_string();
    let events = Events::new(&what, &hook, &header, &obj.maps.losses, obj.object());
    run::stream(session, events, &mut stream, |out, ev| {
        if out.json {
            ev.write_json(&mut heads, out.buf(), &mut marks);
            out.end_line()?;
        } else {
            out.line(&ev.text(&mut heads, start_ns))?;
        }
        Ok(true)
    })?
    .close(json!({}))
}
