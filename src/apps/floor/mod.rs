// SPDX-License-Identifier: Apache-2.0
//! `btrace floor` (only in builds with the `testing` feature, which `make bench` uses):
//! loads the reference programs of floor.bpf.c so the benchmark can measure the floors on
//! the same hooks as the tracers.

use anyhow::Result;
use clap::{Args, ValueEnum};
use libbpf_rs::skel::{OpenSkel, Skel};

use crate::core::skel::SkelKind;

use crate::core::output::OutputArgs;
use crate::core::run::Checked;
use crate::core::session::{Step, TraceArgs};

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/floor.skel.rs"));
}
use skel::{FloorSkel, FloorSkelBuilder, OpenFloorSkel};

crate::skel_kind!(FloorKind, FloorSkelBuilder, OpenFloorSkel, FloorSkel);

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// Programs that do nothing
    Empty,
    /// Clock on entry in task storage, clock on exit
    Latency,
    /// The latency floor on a uprobe+uretprobe pair of TARGET:FUNC (for `uprobe --hist`)
    Uprobe,
}

#[derive(Args, Debug, Clone)]
pub struct FloorArgs {
    #[command(flatten)]
    pub common: TraceArgs,
    #[arg(value_enum)]
    pub kind: Kind,
    /// uprobe: the function, TARGET:FUNC as `btrace uprobe` takes it
    #[arg(value_name = "TARGET:FUNC")]
    pub target: Option<String>,
}

pub fn run(args: FloorArgs, sink: &OutputArgs) -> Result<i32> {
    let mut session = Checked::system()?.start(&args.common, sink, None)?;
    let mut storage = std::mem::MaybeUninit::uninit();
    // Only the open step of core::lifecycle: the floor measures bare programs, with no
    // scope filter or fallback between them and the hook.
    let mut open = FloorKind::open(&mut storage)?;
    let (empty, latency, uprobe) = match args.kind {
        Kind::Empty => (true, false, false),
        Kind::Latency => (false, true, false),
        Kind::Uprobe => (false, false, true),
    };
    open.progs.floor_empty_enter.set_autoload(empty);
    open.progs.floor_empty_exit.set_autoload(empty);
    open.progs.floor_latency_enter.set_autoload(latency);
    open.progs.floor_latency_exit.set_autoload(latency);
    open.progs.floor_uprobe_enter.set_autoload(uprobe);
    open.progs.floor_uprobe_exit.set_autoload(uprobe);
    let mut skel = open.load()?;
    let mut _links = Vec::new();
    if uprobe {
        let spec = args
            .target
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("floor uprobe needs TARGET:FUNC"))?;
        let t = crate::tracers::uprobe::tracer::resolve(spec, None, true)?;
        let off = t.func.offset as usize;
        let p = &skel.progs;
        _links.push(
            p.floor_uprobe_enter
                .attach_uprobe(false, -1, &t.path, off)?,
        );
        _links.push(p.floor_uprobe_exit.attach_uprobe(true, -1, &t.path, off)?);
    } else {
        skel.attach()?;
    }
    session.attached(&format!("{:?} floor", args.kind))?;
    session.run(|step| {
        if let Step::Poll(wait) = step {
            std::thread::sleep(wait);
        }
        Ok(())
    })?;
    Ok(0)
}
