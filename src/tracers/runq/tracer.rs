// SPDX-License-Identifier: Apache-2.0
//! Run-queue latency: how long runnable tasks wait for a CPU, as a log2 histogram kept in
//! the kernel (runq.bpf.c), optionally broken down by process or cgroup. Used by
//! `btrace runqlat` and the dashboard.

use anyhow::Result;
use libbpf_rs::skel::Skel;
use libbpf_rs::MapCore;

use crate::core::attach::{self, Links, TaskWay};
use crate::core::cgroup_labels::{CgroupLabels, CgroupSplit};
use crate::core::kmem::Driver;
use crate::core::lifecycle::{self, Declaration};
use crate::core::losses::Losses;
use crate::core::percpu;
use crate::core::rodata;
use crate::core::scope::Scope;
use crate::core::skel::plain_prefix;
use crate::model::delta::Cumulative;
use crate::model::histogram::Log2Hist;
use crate::model::metrics::Metrics;
use crate::model::task::comm_text;
use crate::tracers::{LiveFilter, LoadConfig, Sample, Tracer};

use super::skel::{types, OpenRunqSkel, Runq, RunqKind, RunqSkel, MAX_KEYS};

/// What the waits are broken down by (enum runq_by).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum By {
    #[default]
    Nothing,
    Process,
    Cgroup,
}

/// One load of the tracer as core::lifecycle drives it.
struct RunqLoad<'a> {
    scope: &'a Scope,
    by: By,
    /// The bound of the breakdown's table (default RUNQ_MAX_KEYS).
    keys: Option<u32>,
    /// The dashboard's run-time filter, written before anything is attached (None: the
    /// run-time settings as loaded).
    live: Option<Option<&'a LiveFilter>>,
}

impl Declaration for RunqLoad<'_> {
    type Kind = RunqKind;
    type Way = TaskWay;
    const DRIVERS: &'static [Driver] = &[Driver::new("runq_keys", "--max-keys")];

    fn scope(&self) -> &Scope {
        self.scope
    }

    fn configure(&self, way: TaskWay, open: &mut OpenRunqSkel<'_>) -> Result<()> {
        let by = self.by;
        rodata::typed(&mut open.maps.rodata_data).by = match by {
            By::Nothing => types::runq_by::RUNQ_BY_NONE.0,
            By::Process => types::runq_by::RUNQ_BY_PROCESS.0,
            By::Cgroup => types::runq_by::RUNQ_BY_CGROUP.0,
        };
        let keys = if by == By::Nothing {
            1
        } else {
            self.keys.unwrap_or(MAX_KEYS)
        };
        open.maps.runq_keys.set_max_entries(keys)?;
        open.maps
            .runq_comms
            .set_max_entries(if by == By::Process { keys } else { 1 })?;
        let btf = way == TaskWay::TpBtfTask;
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
        Ok(())
    }

    fn loaded(&self, _way: TaskWay, runq: &RunqSkel<'_>) -> Result<()> {
        match self.live {
            Some(live) => write_live(runq, live, None),
            None => Ok(()),
        }
    }
}

/// Opens and loads the programs of one way without attaching them. `keys`: the bound of
/// the breakdown's table (default RUNQ_MAX_KEYS).
pub fn open_load(way: TaskWay, scope: &Scope, by: By, keys: Option<u32>) -> Result<Runq> {
    let decl = RunqLoad {
        scope,
        by,
        keys,
        live: None,
    };
    lifecycle::open_load(&decl, way)
}

/// Loads and attaches the cheapest way this kernel accepts.
pub fn load_best(scope: &Scope, live: Option<&LiveFilter>) -> Result<(TaskWay, Runq, Links)> {
    load_first(&TaskWay::ALL, scope, live, By::Nothing, None)
}

/// Loads and attaches the first of `ways` this kernel accepts.
pub fn load_first(
    ways: &[TaskWay],
    scope: &Scope,
    live: Option<&LiveFilter>,
    by: By,
    keys: Option<u32>,
) -> Result<(TaskWay, Runq, Links)> {
    let decl = RunqLoad {
        scope,
        by,
        keys,
        live: Some(live),
    };
    lifecycle::load_first(&decl, ways)
}

/// Writes the run-time process filter and the epoch before which stored wake times are
/// stale (set before re-attaching, so a task woken while detached is not measured).
fn write_live(runq: &RunqSkel<'_>, live: Option<&LiveFilter>, epoch_ns: Option<u64>) -> Result<()> {
    crate::tracers::write_live!(runq, live, epoch_ns)
}

/// Waits for a CPU: their latency histogram and how they began, CPUs summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunqStat {
    pub lat: Log2Hist,
    pub wakeups: u64,
    pub preemptions: u64,
    /// Wakeups counted as they happened, also those no wait followed.
    pub woken: u64,
}

impl RunqStat {
    fn sum(cpus: &[types::runq_stat]) -> RunqStat {
        let mut s = RunqStat::default();
        for c in cpus {
            s.lat.add(&Log2Hist {
                count: c.lat.count,
                sum_ns: c.lat.sum_ns,
                buckets: c.lat.buckets,
            });
            s.wakeups += c.wakeups;
            s.preemptions += c.preemptions;
            s.woken += c.woken;
        }
        s
    }

    /// self - o (what remains when the listed keys are taken from the total).
    pub fn minus(&self, o: &RunqStat) -> RunqStat {
        RunqStat {
            lat: self.lat.since(&o.lat),
            wakeups: self.wakeups.saturating_sub(o.wakeups),
            preemptions: self.preemptions.saturating_sub(o.preemptions),
            woken: self.woken.saturating_sub(o.woken),
        }
    }

    pub fn add(&mut self, o: &RunqStat) {
        self.lat.add(&o.lat);
        self.wakeups += o.wakeups;
        self.preemptions += o.preemptions;
        self.woken += o.woken;
    }
}

impl Cumulative for RunqStat {
    fn since(&self, e: &Self) -> Option<Self> {
        (self.lat.count >= e.lat.count && self.woken >= e.woken).then(|| self.minus(e))
    }
}

/// The cumulative totals of every wait, CPUs summed.
pub fn read_stat(runq: &Runq) -> Result<RunqStat> {
    Ok(RunqStat::sum(&percpu::values::<types::runq_stat>(
        &runq.maps.runq,
        0,
    )?))
}

/// The cumulative run-queue latency histogram, CPUs summed.
pub fn read_total(runq: &Runq) -> Result<Log2Hist> {
    Ok(read_stat(runq)?.lat)
}

/// The breakdown's entries (tgid or cgroup id), cumulative, CPUs summed.
pub fn read_keys(runq: &Runq) -> Result<Vec<(u64, RunqStat)>> {
    Ok(
        percpu::hash_entries::<u64, types::runq_stat>(&runq.maps.runq_keys)?
            .into_iter()
            .map(|(id, cpus)| (id, RunqStat::sum(&cpus)))
            .collect(),
    )
}

/// The host tgid of a by-process breakdown key (its high half names the process's name
/// at the time of the waits: one key per name a process had).
pub fn key_tgid(key: u64) -> u32 {
    key as u32
}

/// The name of a by-process breakdown key: the process's (its leader's) name when it
/// waited.
pub fn process_name(runq: &Runq, tgid: u64) -> Option<String> {
    let v = runq
        .maps
        .runq_comms
        .lookup(&tgid.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
        .ok()??;
    let c: types::runq_comm = plain_prefix(&v);
    Some(comm_text(&c.comm))
}

/// The runq tracer as the dashboard and the exporter hold it.
pub struct RunqTracer {
    runq: Runq,
    way: TaskWay,
    links: Links,
    /// The exporter's `--by cgroup` (loaded with the per-cgroup breakdown).
    by_cgroup: Option<CgroupSplit<()>>,
}

impl RunqTracer {
    pub fn load(cfg: &LoadConfig) -> Result<Box<dyn Tracer>> {
        let by = if cfg.by_cgroup.is_some() {
            By::Cgroup
        } else {
            By::Nothing
        };
        // Labelled cgroups, and room for those that come and go between scrapes (the
        // entries of cgroups sent to "other" are deleted at each scrape).
        let keys = cfg.by_cgroup.map(|cap| cap.saturating_add(1024));
        let (way, runq, links) = load_first(
            &TaskWay::ALL,
            &cfg.make_scope()?,
            Some(&cfg.filter),
            by,
            keys,
        )?;
        Ok(Box::new(RunqTracer {
            runq,
            way,
            links,
            by_cgroup: cfg.by_cgroup.map(|_| CgroupSplit::default()),
        }))
    }
}

impl Tracer for RunqTracer {
    crate::tracers::loaded_tracer!("runq", runq);

    fn attach(&mut self) -> Result<()> {
        if self.links.is_empty() {
            write_live(&self.runq, None, Some(crate::core::system::monotonic_ns()))?;
            self.links = attach::attach_loaded(self.runq.object())?;
        }
        Ok(())
    }

    fn set_filter(&mut self, f: &LiveFilter) -> Result<()> {
        write_live(&self.runq, Some(f), None)
    }

    fn losses(&self) -> Result<Losses> {
        losses(&self.runq)
    }

    fn sample(&mut self) -> Result<Sample> {
        Ok(Sample::RunQueue(Box::new(read_total(&self.runq)?)))
    }

    fn metrics(&mut self, out: &mut Metrics, cgroups: Option<&mut CgroupLabels>) -> Result<()> {
        // The total first, then the breakdown (see CgroupSplit::split).
        let total = read_total(&self.runq)?;
        match (cgroups, self.by_cgroup.as_mut()) {
            (Some(labels), Some(split)) => {
                let entries = read_keys(&self.runq)?
                    .into_iter()
                    .map(|(id, s)| (id, (), s.lat))
                    .collect();
                let map = &self.runq.maps.runq_keys;
                let series = split.split(labels, &[((), total)], entries, |id, _| {
                    let _ = map.delete(&id.to_ne_bytes());
                });
                let by: Vec<(String, Log2Hist)> =
                    series.into_iter().map(|(l, (), h)| (l, h)).collect();
                super::metrics::by_cgroup(&by, out);
            }
            _ => super::metrics::families(&total, out),
        }
        Ok(())
    }
}

/// Whether the tracer works here, by loading and attaching it for real (btrace doctor).
pub fn check() -> Result<String> {
    let (way, ..) = load_best(&Scope::default(), None)?;
    Ok(format!("via {way}"))
}

pub fn losses(runq: &Runq) -> Result<Losses> {
    Losses::read(&runq.maps.losses)?.with_missed(runq.object())
}
