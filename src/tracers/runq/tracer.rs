// SPDX-License-Identifier: Apache-2.0
//! Run-queue latency: how long runnable tasks wait for a CPU, as a log2 histogram kept in
//! the kernel (runq.bpf.c). Used by the dashboard.

use std::fmt;
use std::os::fd::BorrowedFd;

use anyhow::Result;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::Link;

use crate::core::abi::types::hist;
use crate::core::attach;
use crate::core::losses::Losses;
use crate::core::percpu;
use crate::core::scope::Scope;
use crate::core::skel::{write_bss, Loaded};
use crate::model::histogram::Log2Hist;
use crate::tracers::{LiveFilter, Sample, Tracer};

use super::skel::{types, Runq, RunqSkelBuilder};

/// The hooks and per-task store, cheapest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// tp_btf on the sched tracepoints, wake time in task storage (5.11+).
    TpBtfTask,
    /// raw_tp, wake time in a bounded hash keyed by pid.
    RawTpHash,
}

pub const WAYS: [Way; 2] = [Way::TpBtfTask, Way::RawTpHash];

impl fmt::Display for Way {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Way::TpBtfTask => "tp_btf+task_storage",
            Way::RawTpHash => "raw_tp+hash",
        })
    }
}

/// Opens and loads the programs of one way without attaching them.
pub fn open_load(way: Way, scope: &Scope) -> Result<Runq> {
    Loaded::new(|storage| {
        let mut open = crate::skel_builder!(RunqSkelBuilder).open(storage)?;
        crate::apply_scope!(open, scope, true);
        let btf = way == Way::TpBtfTask;
        let p = &mut open.progs;
        p.sched_wakeup_btf.set_autoload(btf);
        p.sched_wakeup_new_btf.set_autoload(btf);
        p.sched_switch_btf.set_autoload(btf);
        p.sched_wakeup_raw.set_autoload(!btf);
        p.sched_wakeup_new_raw.set_autoload(!btf);
        p.sched_switch_raw.set_autoload(!btf);
        if btf {
            open.maps.queued_hash.set_max_entries(1)?;
        } else {
            open.maps.queued_task.set_autocreate(false)?;
        }
        let runq = open.load()?;
        scope.install(&runq.maps.scope_cgroups)?;
        Ok(runq)
    })
}

/// Loads and attaches the cheapest way this kernel accepts.
pub fn load_best(scope: &Scope, live: Option<&LiveFilter>) -> Result<(Way, Runq, Vec<Link>)> {
    let (way, (runq, links)) = attach::first_that_works(&WAYS, |way| {
        let runq = open_load(way, scope)?;
        write_live(&runq, live, None)?;
        let links = attach::attach_loaded(runq.object())?;
        scope.seed(&runq.maps.scope_procs)?;
        Ok((runq, links))
    })?;
    Ok((way, runq, links))
}

/// Writes the run-time process filter and the epoch before which stored wake times are
/// stale (set before re-attaching, so a task woken while detached is not measured).
fn write_live(runq: &Runq, live: Option<&LiveFilter>, epoch_ns: Option<u64>) -> Result<()> {
    if let Some(f) = live {
        crate::core::scope::prepare_live_tree(&runq.maps.scope_procs, f.pid)?;
    }
    write_bss(
        &runq.maps.bss,
        runq.maps.bss_data.as_deref(),
        |bss: &mut types::bss| {
            if let Some(f) = live {
                crate::set_live_scope!(bss, f);
            }
            if let Some(e) = epoch_ns {
                bss.epoch_ns = e;
            }
        },
    )
}

/// The cumulative run-queue latency histogram, CPUs summed.
pub fn read_total(runq: &Runq) -> Result<Log2Hist> {
    Ok(Log2Hist::sum_cpus(&percpu::values::<hist>(
        &runq.maps.runq,
        0,
    )?))
}

/// The runq tracer as the dashboard and the exporter hold it.
pub struct RunqTracer {
    runq: Runq,
    way: Way,
    links: Vec<Link>,
}

impl RunqTracer {
    pub fn load(f: &LiveFilter) -> Result<Box<dyn Tracer>> {
        let (way, runq, links) = load_best(&Scope::live(), Some(f))?;
        Ok(Box::new(RunqTracer { runq, way, links }))
    }
}

impl Tracer for RunqTracer {
    fn name(&self) -> &'static str {
        "runq"
    }

    fn hook(&self) -> String {
        self.way.to_string()
    }

    fn attached(&self) -> bool {
        !self.links.is_empty()
    }

    fn attach(&mut self) -> Result<()> {
        if self.links.is_empty() {
            write_live(&self.runq, None, Some(crate::core::system::monotonic_ns()))?;
            self.links = attach::attach_loaded(self.runq.object())?;
        }
        Ok(())
    }

    fn detach(&mut self) {
        self.links.clear();
    }

    fn set_filter(&mut self, f: &LiveFilter) -> Result<()> {
        write_live(&self.runq, Some(f), None)
    }

    fn losses(&self) -> Result<Losses> {
        Losses::read(&self.runq.maps.losses)
    }

    fn programs(&self) -> Vec<BorrowedFd<'_>> {
        attach::loaded_programs(self.runq.object())
    }

    fn sample(&mut self) -> Result<Sample> {
        Ok(Sample::RunQueue(Box::new(read_total(&self.runq)?)))
    }
}

/// Whether the tracer works here, by loading and attaching it for real (btrace doctor).
pub fn check() -> Result<String> {
    let (way, ..) = load_best(&Scope::default(), None)?;
    Ok(format!("via {way}"))
}
