// SPDX-License-Identifier: Apache-2.0
//! `btrace profile`: what runs on the CPUs, by stack (timed samples on every CPU,
//! counted in the kernel), symbolized, as the top stacks, folded stacks, JSON or an SVG
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

use super::tracer::{self, Config, DEFAULT_HZ};

#[derive(Args, Debug, Clone)]
pub struct ProfileArgs {
    /// Samples per second on each CPU (perf's software cpu-clock)
    #[arg(short = 'F', long = "frequency", value_name = "HZ", default_value_t = DEFAULT_HZ, value_parser = tracer::parse_hz)]
    pub hz: u64,
    #[command(flatten)]
    pub stacks: StackOutArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub common: TraceArgs,
}

pub fn run(args: ProfileArgs, sink: &OutputArgs) -> Result<i32> {
    let mut session = Checked::system()?.start(&args.common, sink, None)?;
    let svg = stacks::open_svg(&args.stacks)?;
    let cfg = Config {
        scope: Scope::new(session.tgid(), &args.scope)?,
        hz: args.hz,
        kernel: !args.stacks.user_stacks,
        user: !args.stacks.kernel_stacks,
        max_stacks: args.stacks.max_stacks,
        max_counts: args.stacks.max_counts(tracer::MAX_COUNTS),
    };
    let mut loaded = tracer::load(&cfg).map_err(|e| {
        crate::core::kmem::unless_too_big(e, |e| {
            anyhow::anyhow!("cannot profile: {}", crate::core::attach::describe(&e))
        })
    })?;
    let p = &loaded.skel;
    let maps = tracer::table_maps(p);
    let mut tables = StackTables::new(cfg.max_counts, cfg.max_stacks, |v| {
        let n = u64::from_ne_bytes(v[..8].try_into().expect("a u64 count"));
        (n, n)
    });
    let drain = args.stacks.drain();
    let mut procs = EventStream::new(&p.maps.proc_events, stacks::decode_proc_event)?;
    let mut seen_procs = stacks::ProcStacks::new();
    let mut out = session.output();
    session.attached(&format!(
        "CPU samples at {} Hz on {} CPUs",
        args.hz,
        loaded.cpus.len()
    ))?;
    let end = session.run(|step| {
        if let Step::Poll(wait) = step {
            // Each process's maps are read at its first sample, while it lives.
            for seen in procs.poll(wait)? {
                seen_procs.seen(&seen);
            }
            if drain {
                tables.poll(&maps)?;
            }
            seen_procs.sweep(&p.maps.proc_gens, &tables);
        }
        Ok(())
    })?;
    // Sampling stops (the perf events are closed with their links), then the tables are
    // drained a last time: what the kernel saw and what was kept are read at one point.
    loaded.links.clear();
    // From here to the report written: reading the maps, symbolizing, printing.
    let collected = std::time::Instant::now();
    for seen in procs.poll(std::time::Duration::ZERO)? {
        seen_procs.seen(&seen);
    }
    tables.finish(&maps)?;
    let seen = StackTables::seen(&maps)?;
    let entries = tables.entries();
    let gens = stacks::read_gens(&p.maps.proc_gens);
    let (all, truncated, unreadable) =
        seen_procs.symbolize_counts(tables.stacks(), &gens, &entries, false);
    let samples: u64 = all.iter().map(|s| s.value).sum();
    let mut slosses = StackLosses::read(&p.maps.stack_losses)?;
    slosses.user_truncated = truncated;
    slosses.unreadable = unreadable;
    let title = format!("btrace profile: CPU samples at {} Hz", args.hz);
    stacks::report(
        &mut out,
        &all,
        &args.stacks,
        svg,
        Measure::Samples,
        &title,
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
    let losses = Losses::read(&p.maps.losses)?.with_missed(p.object())?;
    session.finish(
        out,
        end,
        Closing {
            what: &format!("CPU samples at {} Hz", args.hz),
            hook: "perf_event",
            counted: Some(("samples", samples)),
            losses,
            specific: json!({
                "frequency_hz": args.hz,
                "event": "cpu-clock",
                "cpus": loaded.cpus.len(),
                "stacks": all.len(),
                "samples_seen": seen.count,
                "drains": tables.drains,
                "stack_losses": slosses.json(),
                "report_s": report_s,
            }),
        },
    )
}
