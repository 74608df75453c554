// SPDX-License-Identifier: Apache-2.0
//! `btrace floor` (only in builds with the `testing` feature, which `make bench` uses):
//! loads the reference programs of floor.bpf.c so the benchmark can measure the floors on
//! the same hooks as the tracers.

use anyhow::Result;
use clap::{Args, ValueEnum};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

use crate::core::session::{Session, Step, TraceArgs};

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/floor.skel.rs"));
}
use skel::FloorSkelBuilder;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    /// Programs that do nothing
    Empty,
    /// Clock on entry in task storage, clock on exit
    Latency,
}

#[derive(Args, Debug, Clone)]
pub struct FloorArgs {
    #[command(flatten)]
    pub common: TraceArgs,
    #[arg(value_enum)]
    pub kind: Kind,
}

pub fn run(args: FloorArgs) -> Result<i32> {
    crate::core::system::preflight()?;
    let mut session = Session::new(&args.common, None)?;
    let mut storage = std::mem::MaybeUninit::uninit();
    let mut open = crate::skel_builder!(FloorSkelBuilder).open(&mut storage)?;
    let empty = matches!(args.kind, Kind::Empty);
    open.progs.floor_empty_enter.set_autoload(empty);
    open.progs.floor_empty_exit.set_autoload(empty);
    open.progs.floor_latency_enter.set_autoload(!empty);
    open.progs.floor_latency_exit.set_autoload(!empty);
    let mut skel = open.load()?;
    skel.attach()?;
    session.attached(&format!("{:?} floor", args.kind))?;
    session.run(|step| {
        if let Step::Poll(wait) = step {
            std::thread::sleep(wait);
        }
        Ok(())
    })?;
    Ok(0)
}
