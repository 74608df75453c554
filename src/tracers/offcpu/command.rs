// SPDX-License-Identifier: Apache-2.0
//! `btrace offcpu`: where tasks block, by stack: the exact time each (thread, kernel
//! stack, user stack) spent blocked, as the top stacks, folded stacks, JSON or an SVG
//! flame graph.

use anyhow::Result;
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::json;

use crate::core::losses::Losses;
use crate::core::output::{Output, OutputArgs};
use crate::core::run::Checked;
use crate::core::scope::{Scope, ScopeArgs};
use crate::core::session::{Closing, Step, TraceArgs};
use crate::core::stack_tables::StackTables;
use crate::core::stacks::{self, Measure, StackLosses, StackOutArgs};
use crate::core::stream::EventStream;

use super::skel::types::offcpu_val;
use super::tracer::{self, Config};

#[derive(Args, Debug, Clone)]
pub struct OffcpuArgs {
    /// Leave out blocks shorter than US microseconds
    #[arg(long, value_name = "US", default_value = "1", value_parser = tracer::parse_min_block)]
    pub min_block: u64,
    #[command(flatten)]
    pub stacks: StackOutArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub common: TraceArgs,
}

pub fn run(args: OffcpuArgs, sink: &OutputArgs) -> Result<i32> {
    let mut session = Checked::system()?.start(&args.common, sink, None)?;
    let svg = stacks::open_svg(&args.stacks)?;
    let cfg = Config {
        scope: Scope::new(session.tgid(), &args.scope)?,
        min_block_ns: args.min_block,
        kernel: !args.stacks.user_stacks,
        user: !args.stacks.kernel_stacks,
        max_stacks: args.stacks.max_stacks,
        max_counts: args.stacks.max_counts(tracer::MAX_COUNTS),
    };
    let (way, o, mut links) = tracer::load(&cfg).map_err(|e| {
        crate::core::kmem::unless_too_big(e, |e| {
            anyhow::anyhow!("cannot trace off-CPU time: {e:#}")
        })
    })?;
    let maps = tracer::table_maps(&o);
    let mut tables = StackTables::new(cfg.max_counts, cfg.max_stacks, |v| {
        let val: offcpu_val = crate::core::skel::plain_prefix(v);
        (val.total_ns, val.count)
    });
    let drain = args.stacks.drain();
    let mut procs = EventStream::new(&o.maps.proc_events, stacks::decode_proc_event)?;
    let mut seen_procs = stacks::ProcStacks::new();
    let mut out = session.output();
    session.attached("off-CPU time")?;
    let end = session.run(|step| {
        if let Step::Poll(wait) = step {
            for seen in procs.poll(wait)? {
                seen_procs.seen(&seen);
            }
            if drain {
                tables.poll(&maps)?;
            }
            seen_procs.sweep(&o.maps.proc_gens, &tables);
        }
        Ok(())
    })?;
    // The programs detached, then the tables drained a last time: what the kernel saw
    // and what was kept are read at one point.
    links.clear();
    // From here to the report written: reading the maps, symbolizing, printing.
    let collected = std::time::Instant::now();
    for seen in procs.poll(std::time::Duration::ZERO)? {
        seen_procs.seen(&seen);
    }
    tables.finish(&maps)?;
    let seen = StackTables::seen(&maps)?;
    let entries = tables.entries();
    let gens = stacks::read_gens(&o.maps.proc_gens);
    let (all, truncated, unreadable) =
        seen_procs.symbolize_counts(tables.stacks(), &gens, &entries, true);
    let total_ns: u64 = all.iter().map(|s| s.value).sum();
    let blocks: u64 = all.iter().map(|s| s.count).sum();
    let mut slosses = StackLosses::read(&o.maps.stack_losses)?;
    slosses.user_truncated = truncated;
    slosses.unreadable = unreadable;
    stacks::report(
        &mut out,
        &all,
        &args.stacks,
        svg,
        Measure::BlockedNs,
        "btrace offcpu: time blocked (ns)",
        seen,
    )?;
    out.flush()?;
    let report_s = collected.elapsed().as_secs_f64();
    // Folded stacks are data for other tools: the notes go to stderr.
    let mut notes;
    let out = if args.stacks.folded {
        out.flush()?;
        notes = Output::stderr();
        &mut notes
    } else {
        &mut out
    };
    if !out.json {
        out.line(&slosses.text())?;
    }
    session.finish(
        out,
        end,
        Closing {
            what: "off-CPU time",
            hook: &way.to_string(),
            counted: Some(("blocks", blocks)),
            losses: Losses::read(&o.maps.losses)?.with_missed(o.object())?,
            specific: json!({
                "total_ns": total_ns,
                "min_block_us": args.min_block / 1000,
                "stacks": all.len(),
                "blocks_seen": seen.count,
                "drains": tables.drains,
                "stack_losses": slosses.json(),
                "report_s": report_s,
            }),
        },
    )
}
