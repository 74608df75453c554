// SPDX-License-Identifier: Apache-2.0
//! The run both stack profilers (profile, offcpu) make on the aggregation driver
//! ([`run::aggregate`]): while the programs count stacks, each process's maps are read at
//! its first stack (while it lives) and the tables are drained; at the end the programs
//! stop, the tables are drained a last time, and the stacks are symbolized and reported
//! (top stacks, folded, JSON, SVG). The command then closes with its own fields. Both take
//! the same flags beside their own ([`StackRunArgs`]) and start from them alike ([`start`]).

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use libbpf_rs::MapCore;
use serde_json::Value;

use crate::core::losses::Losses;
use crate::core::output::{OutputArgs, OutputFile};
use crate::core::run::{self, Aggregation, Checked, Ended, Polling};
use crate::core::scope::{Scope, ScopeArgs};
use crate::core::session::{Session, TraceArgs};
use crate::core::stack_tables::{Seen, StackTables, TableMaps};
use crate::core::stacks::{self, Measure, ProcStacks, StackLosses, StackOutArgs};
use crate::core::stream::EventStream;

/// The flags both profilers take beside their own: the report's, the scope, the run's.
#[derive(Args, Debug, Clone)]
pub struct StackRunArgs {
    #[command(flatten)]
    pub stacks: StackOutArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub common: TraceArgs,
}

/// What a profiler's programs take from the stack flags: which stacks they walk, and the
/// tables' bounds (see [`StackTables::new`]).
#[derive(Clone, Copy, Debug)]
pub struct StackSettings {
    pub kernel: bool,
    pub user: bool,
    pub max_stacks: u32,
    pub max_counts: u32,
}

impl StackSettings {
    /// Both stacks, small tables: a load that only checks the profiler works here.
    pub const CHECK: StackSettings = StackSettings {
        kernel: true,
        user: true,
        max_stacks: 64,
        max_counts: 64,
    };
}

/// A profile's start, before anything is loaded.
pub struct Start {
    /// The run, its target started.
    pub session: Session,
    /// `--svg`'s file.
    pub svg: Option<OutputFile>,
    pub scope: Scope,
    pub stacks: StackSettings,
}

/// Starts a profile from its flags: the session, --svg's file, the scope and the stacks'
/// settings; `max_counts` is the profiler's bound of each counts buffer.
pub fn start(args: &StackRunArgs, sink: &OutputArgs, max_counts: u32) -> Result<Start> {
    let session = Checked::system()?.start(&args.common, sink, None)?;
    let svg = stacks::open_svg(&args.stacks)?;
    let scope = Scope::new(session.tgid(), &args.scope)?;
    let stacks = StackSettings {
        kernel: !args.stacks.user_stacks,
        user: !args.stacks.kernel_stacks,
        max_stacks: args.stacks.max_stacks,
        max_counts: args.stacks.max_counts(max_counts),
    };
    Ok(Start {
        session,
        svg,
        scope,
        stacks,
    })
}

/// The maps of a profiler's skeleton that its run reads.
pub struct ProfileMaps<'a> {
    pub tables: TableMaps<'a>,
    pub proc_events: &'a dyn MapCore,
    pub proc_gens: &'a dyn MapCore,
    pub stack_losses: &'a dyn MapCore,
    pub losses: &'a dyn MapCore,
    /// The loaded programs, whose runs the kernel skipped count as `lost.missed`.
    pub object: &'a libbpf_rs::Object,
}

/// The [`ProfileMaps`] of a loaded profiler skeleton (profile, offcpu: the same map names
/// in each), its tables' maps given.
macro_rules! profile_maps {
    ($skel:expr, $tables:expr) => {
        $crate::core::stack_run::ProfileMaps {
            tables: $tables,
            proc_events: &$skel.maps.proc_events,
            proc_gens: &$skel.maps.proc_gens,
            stack_losses: &$skel.maps.stack_losses,
            losses: &$skel.maps.losses,
            object: $skel.object(),
        }
    };
}
pub(crate) use profile_maps;

/// A stack profile, as [`profile`] runs it.
pub struct Profile<'a> {
    pub maps: ProfileMaps<'a>,
    /// The tables' bounds among them.
    pub stacks: StackSettings,
    /// (value, count) of one count entry.
    pub value: fn(&[u8]) -> (u64, u64),
    pub args: &'a StackOutArgs,
    /// `--svg`'s file, opened before anything was attached.
    pub svg: Option<OutputFile>,
    pub measure: Measure,
    /// The flame graph's title.
    pub title: &'a str,
    /// Kernel stacks taken in a tracing program, with its machinery on top to remove.
    pub from_tracing: bool,
}

/// A profile reported: what its closing record says besides the command's own fields.
pub struct Profiled<'a> {
    /// The run, to close.
    pub ended: Ended<'a>,
    /// Distinct stacks reported.
    pub stacks: usize,
    /// Their values (samples, nanoseconds blocked) and counts (samples, blocks), summed.
    pub value: u64,
    pub count: u64,
    /// What the programs saw, kept or lost.
    pub seen: Seen,
    pub drains: u64,
    pub stack_losses: Value,
    /// Seconds from the programs' stop to the report written.
    pub report_s: f64,
    pub losses: Losses,
}

/// Runs a stack profile until the run ends; `stop` ends the sampling (detaches the
/// programs) before the last drain, so that what the kernel saw and what was kept are
/// read at one point. The stack losses' line follows the report in text (on stderr with
/// --folded, as the closing line).
pub fn profile<'a>(
    session: Session,
    desc: Aggregation<'a>,
    p: Profile<'_>,
    stop: impl FnOnce(),
) -> Result<Profiled<'a>> {
    let m = &p.maps;
    let mut tables = StackTables::new(p.stacks.max_counts, p.stacks.max_stacks, p.value);
    let drain = p.args.drain();
    let mut procs = EventStream::new(m.proc_events, stacks::decode_proc_event)?;
    let mut seen_procs = ProcStacks::new();
    let mut ended = run::aggregate(
        session,
        desc,
        Polling(|wait| {
            // Each process's maps are read at its first stack, while it lives.
            for seen in procs.poll(wait)? {
                seen_procs.seen(&seen);
            }
            if drain {
                tables.poll(&m.tables)?;
            }
            seen_procs.sweep(m.proc_gens, &tables);
            Ok(())
        }),
    )?;
    stop();
    // From here to the report written: reading the maps, symbolizing, printing.
    let collected = Instant::now();
    for seen in procs.poll(Duration::ZERO)? {
        seen_procs.seen(&seen);
    }
    tables.finish(&m.tables)?;
    let seen = StackTables::seen(&m.tables)?;
    let entries = tables.entries();
    let gens = stacks::read_gens(m.proc_gens);
    let (all, truncated, unreadable) =
        seen_procs.symbolize_counts(tables.stacks(), &gens, &entries, p.from_tracing);
    let mut slosses = StackLosses::read(m.stack_losses)?;
    slosses.user_truncated = truncated;
    slosses.unreadable = unreadable;
    let out = ended.out();
    stacks::report(out, &all, p.args, p.svg, p.measure, p.title, seen)?;
    out.flush()?;
    let report_s = collected.elapsed().as_secs_f64();
    if p.args.folded {
        ended.notes_to_stderr()?;
    }
    if !ended.out().json {
        ended.out().line(&slosses.text())?;
    }
    Ok(Profiled {
        ended,
        stacks: all.len(),
        value: all.iter().map(|s| s.value).sum(),
        count: all.iter().map(|s| s.count).sum(),
        seen,
        drains: tables.drains,
        stack_losses: slosses.json(),
        report_s,
        losses: Losses::read(m.losses)?.with_missed(m.object)?,
    })
}
