// SPDX-License-Identifier: Apache-2.0
//! `btrace exec`: every execve and execveat call: the program, its arguments (bounded,
//! cuts marked), the parent and its command line, and the result (failed calls too).

use anyhow::Result;
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::json;

use crate::core::event_out::Heads;
use crate::core::output::OutputArgs;
use crate::core::run::{self, Checked, EventArgs, Events};
use crate::core::scope::Scope;
use crate::model::value::JsonMarks;

use super::event::CmdLines;
use super::tracer::{self, Config, Hook, HOOKS};

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    #[command(flatten)]
    pub common: EventArgs,
    /// Only calls that failed
    #[arg(long)]
    pub fails: bool,
    /// Bound of the store of execs in flight at once (default 512; about 9.6 KB each,
    /// preallocated in the kernel)
    #[arg(long, value_name = "N", value_parser = tracer::parse_max_inflight)]
    pub max_inflight: Option<u32>,
    /// Use only this hook, no fallback (default: the syscall tracepoints, else raw_tp)
    #[arg(long, value_enum)]
    pub hook: Option<Hook>,
}

pub fn run(args: ExecArgs, sink: &OutputArgs) -> Result<i32> {
    if let Some(b) = args.common.ring.buffer_size {
        let record = std::mem::size_of::<super::skel::types::exec_event>();
        crate::core::stream::check_ring_fits(b, record)?;
    }
    let session = Checked::system()?.start(&args.common.trace, sink, None)?;
    let cfg = Config {
        scope: Scope::new(session.tgid(), &args.common.scope)?,
        fails_only: args.fails,
        max_inflight: args.max_inflight,
        ring_bytes: args.common.ring.buffer_size,
    };
    let mut hooks = HOOKS.to_vec();
    hooks.retain(|h| args.hook.is_none_or(|want| *h == want));
    let (hook, obj, _links) = tracer::load_first(&hooks, &cfg)?;
    let mut stream = tracer::events(&obj)?;
    let mut heads = Heads::new(&args.common.heads);
    let mut lines = CmdLines::new()?;
    let header = heads.text_header("CALL");
    let start_ns = crate::core::system::monotonic_ns();
    let mut marks = JsonMarks::default();
    let what = if args.fails { "failed execs" } else { "execs" };
    let hook = hook.to_string();
    let events = Events::new(what, &hook, &header, &obj.maps.losses, obj.object());
    run::stream(session, events, &mut stream, |out, ev| {
        let parent = lines.of(ev.ppid);
        let ppid = lines.ns_pid(ev.ppid);
        if ev.ret == 0 {
            if let Some(argv) = &ev.argv {
                lines.learn(ev.head.pid, argv);
            }
        }
        if out.json {
            ev.write_json(&mut heads, ppid, parent.as_ref(), out.buf(), &mut marks);
            out.end_line()?;
        } else {
            out.line(&ev.text(&mut heads, start_ns, ppid, &parent))?;
        }
        Ok(true)
    })?
    .close(json!({}))
}
