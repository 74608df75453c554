// SPDX-License-Identifier: Apache-2.0
//! `btrace profile`: what runs on the CPUs, by stack (timed samples on every CPU,
//! counted in the kernel), symbolized, as the top stacks, folded stacks, JSON or an SVG
//! flame graph.

use anyhow::Result;
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::json;

use crate::core::output::OutputArgs;
use crate::core::run::{Aggregation, Ending};
use crate::core::stack_run::{self, profile_maps, Profile, StackRunArgs};
use crate::core::stacks::Measure;

use super::tracer::{self, Config, DEFAULT_HZ};

#[derive(Args, Debug, Clone)]
pub struct ProfileArgs {
    /// Samples per second on each CPU (perf's software cpu-clock)
    #[arg(short = 'F', long = "frequency", value_name = "HZ", default_value_t = DEFAULT_HZ, value_parser = tracer::parse_hz)]
    pub hz: u64,
    #[command(flatten)]
    pub run: StackRunArgs,
}

pub fn run(args: ProfileArgs, sink: &OutputArgs) -> Result<i32> {
    let start = stack_run::start(&args.run, sink, tracer::MAX_COUNTS)?;
    let cfg = Config {
        scope: start.scope,
        hz: args.hz,
        stacks: start.stacks,
    };
    let mut loaded = tracer::load(&cfg).map_err(|e| {
        crate::core::kmem::unless_too_big(e, |e| {
            anyhow::anyhow!("cannot profile: {}", crate::core::attach::describe(&e))
        })
    })?;
    let p = &loaded.skel;
    let cpus = loaded.cpus.len();
    let what = format!("CPU samples at {} Hz", args.hz);
    let desc = Aggregation {
        tracing: &format!("{what} on {cpus} CPUs"),
        what: &what,
        hook: "perf_event",
    };
    let profile = Profile {
        maps: profile_maps!(p, tracer::table_maps(p)),
        stacks: cfg.stacks,
        value: |v| {
            let n = u64::from_ne_bytes(v[..8].try_into().expect("a u64 count"));
            (n, n)
        },
        args: &args.run.stacks,
        svg: start.svg,
        measure: Measure::Samples,
        title: &format!("btrace profile: CPU samples at {} Hz", args.hz),
        from_tracing: false,
    };
    // Sampling stops with the perf events, closed with their links.
    let r = stack_run::profile(start.session, desc, profile, || loaded.links.clear())?;
    r.ended.close(Ending {
        losses: r.losses,
        counted: Some(("samples", r.value)),
        specific: json!({
            "frequency_hz": args.hz,
            "event": "cpu-clock",
            "cpus": cpus,
            "stacks": r.stacks,
            "samples_seen": r.seen.count,
            "drains": r.drains,
            "stack_losses": r.stack_losses,
            "report_s": r.report_s,
        }),
    })
}
