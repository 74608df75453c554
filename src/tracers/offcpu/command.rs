// SPDX-License-Identifier: Apache-2.0
//! `btrace offcpu`: where tasks block, by stack: the exact time each (thread, kernel
//! stack, user stack) spent blocked, as the top stacks, folded stacks, JSON or an SVG
//! flame graph.

use anyhow::Result;
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::json;

use crate::core::output::OutputArgs;
use crate::core::run::{Aggregation, Checked, Ending};
use crate::core::scope::{Scope, ScopeArgs};
use crate::core::session::TraceArgs;
use crate::core::stack_run::{self, profile_maps, Profile};
use crate::core::stacks::{self, Measure, StackOutArgs};

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
    let session = Checked::system()?.start(&args.common, sink, None)?;
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
    let what = "off-CPU time";
    let hook = way.to_string();
    let desc = Aggregation::new(what, &hook);
    let profile = Profile {
        maps: profile_maps!(o, tracer::table_maps(&o)),
        max_counts: cfg.max_counts,
        max_stacks: cfg.max_stacks,
        value: |v| {
            let val: offcpu_val = crate::core::skel::plain_prefix(v);
            (val.total_ns, val.count)
        },
        args: &args.stacks,
        svg,
        measure: Measure::BlockedNs,
        title: "btrace offcpu: time blocked (ns)",
        from_tracing: true,
    };
    let r = stack_run::profile(session, desc, profile, || links.clear())?;
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
