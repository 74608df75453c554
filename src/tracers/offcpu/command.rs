// SPDX-License-Identifier: Apache-2.0
//! `btrace offcpu`: where tasks block, by stack: the exact time each (thread, kernel
//! stack, user stack) spent blocked, as the top stacks, folded stacks, JSON or an SVG
//! flame graph.

use anyhow::Result;
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::json;

use crate::core::output::OutputArgs;
use crate::core::run::{Aggregation, Ending};
use crate::core::stack_run::{self, profile_maps, Profile, StackRunArgs};
use crate::core::stacks::Measure;

use super::skel::types::offcpu_val;
use super::tracer::{self, Config};

#[derive(Args, Debug, Clone)]
pub struct OffcpuArgs {
    /// Leave out blocks shorter than US microseconds
    #[arg(long, value_name = "US", default_value = "1", value_parser = tracer::parse_min_block)]
    pub min_block: u64,
    #[command(flatten)]
    pub run: StackRunArgs,
}

pub fn run(args: OffcpuArgs, sink: &OutputArgs) -> Result<i32> {
    let start = stack_run::start(&args.run, sink, tracer::MAX_COUNTS)?;
    let cfg = Config {
        scope: start.scope,
        min_block_ns: args.min_block,
        stacks: start.stacks,
    };
    let (way, o, mut links) = tracer::load(&cfg).map_err(|e| {
        crate::core::kmem::unless_too_big(e, |e| {
            anyhow::anyhow!("cannot trace off-CPU time: {e:#}")
        })
    })?;
    let what = "off-CPU time";
    let hook = way.to_string();
    let desc = Aggregation::new(what, &hook);
    let profile = Profile {
        maps: profile_maps!(o, tracer::table_maps(&o)),
        stacks: cfg.stacks,
        value: |v| {
            let val: offcpu_val = crate::core::skel::plain_prefix(v);
            (val.total_ns, val.count)
        },
        args: &args.run.stacks,
        svg: start.svg,
        measure: Measure::BlockedNs,
        title: "btrace offcpu: time blocked (ns)",
        from_tracing: true,
    };
    let r = stack_run::profile(start.session, desc, profile, || links.clear())?;
    r.ended.close(Ending {
        losses: r.losses,
        counted: Some(("blocks", r.count)),
        specific: json!({
            "total_ns": r.value,
            "min_block_us": args.min_block / 1000,
            "stacks": r.stacks,
            "blocks_seen": r.seen.count,
            "drains": r.drains,
            "stack_losses": r.stack_losses,
            "report_s": r.report_s,
        }),
    })
}
