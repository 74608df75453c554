// SPDX-License-Identifier: Apache-2.0
//! The syscall latency tracer: per-syscall log2 histograms kept in the kernel, loaded
//! the cheapest way this kernel allows. Used by `btrace hist` and by the dashboard.

use std::fmt;

use anyhow::{bail, Result};
use libbpf_rs::skel::Skel;
use libbpf_rs::{MapCore, MapFlags};

use crate::core::attach::{self, Links};
use crate::core::cgroup_labels::{CgroupLabels, CgroupSplit};
use crate::core::kmem::Driver;
use crate::core::lifecycle::{self, Declaration};
use crate::core::losses::Losses;
use crate::core::percpu;
use crate::core::rodata;
use crate::core::scope::Scope;
use crate::model::abi::MAX_SYSCALLS;
use crate::model::delta::Deltas;
use crate::model::histogram::Log2Hist;
use crate::model::metrics::Metrics;
use crate::model::task::comm_text;
use crate::tracers::{LiveFilter, LoadConfig, Mode, Sample, Tracer};

use super::skel::{types, Hist, HistKind, HistSkel, OpenHistSkel, BY_MAX_KEYS, MAX_PROCS};

/// Threads a kernel can have at most (PID_MAX_LIMIT on 64-bit): a bigger per-thread store
/// could never fill.
pub const MAX_THREADS_LIMIT: u32 = 1 << 22;

/// `--max-threads N`, bounded (see [`crate::core::system::parse_store_size`]).
pub fn parse_max_threads(s: &str) -> std::result::Result<u32, String> {
    crate::core::system::parse_store_size(
        s,
        MAX_THREADS_LIMIT,
        "a kernel has at most that many threads",
        4,
        std::mem::size_of::<types::syscall_start>() as u64,
    )
}

/// The hook on sys_enter/sys_exit, cheapest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Hook {
    #[value(name = "tp_btf")]
    TpBtf,
    #[value(name = "raw_tp")]
    RawTp,
    Tracepoint,
}

/// Where the entry timestamp waits for the exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    TaskStorage,
    Hash,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Way {
    pub hook: Hook,
    pub store: Store,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::TpBtf => "tp_btf",
            Hook::RawTp => "raw_tp",
            Hook::Tracepoint => "tracepoint",
        })
    }
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Store::TaskStorage => "task_storage",
            Store::Hash => "hash",
        })
    }
}

impl fmt::Display for Way {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.hook, self.store)
    }
}

/// Ways to try, cheapest first. An explicit --max-threads asks for the bounded store.
/// Where this kernel may skip tp_btf and raw_tp programs on the syscall tracepoints
/// ([`syscall_hooks_skip_runs`](crate::core::features::syscall_hooks_skip_runs)), the
/// classic tracepoint way, exact there, goes first.
pub fn ways(bounded: bool) -> Vec<Way> {
    let mut v = Vec::new();
    let exact_first = crate::core::features::syscall_hooks_skip_runs().is_some();
    if exact_first {
        v.push(Way {
            hook: Hook::Tracepoint,
            store: Store::Hash,
        });
    }
    if !bounded {
        v.push(Way {
            hook: Hook::TpBtf,
            store: Store::TaskStorage,
        });
    }
    for hook in [Hook::TpBtf, Hook::RawTp, Hook::Tracepoint] {
        if exact_first && hook == Hook::Tracepoint {
            continue;
        }
        v.push(Way {
            hook,
            store: Store::Hash,
        });
    }
    v
}

/// What `hist --by` breaks the histograms down by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    #[default]
    #[value(skip)]
    Nothing,
    Process,
    Thread,
    Cgroup,
}

impl By {
    fn kernel(self) -> u32 {
        use types::hist_by as K;
        match self {
            By::Nothing => K::HIST_BY_NONE.0,
            By::Process => K::HIST_BY_PROCESS.0,
            By::Thread => K::HIST_BY_THREAD.0,
            By::Cgroup => K::HIST_BY_CGROUP.0,
        }
    }
}

/// Which calls are counted, by their return value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Outcome {
    #[default]
    All,
    /// Failed calls (-4095..-1).
    Errors,
    /// Calls failing with this error number.
    Errno(i32),
}

/// What the kernel side is asked to do, fixed before load.
#[derive(Debug, Default)]
pub struct Config {
    pub scope: Scope,
    pub syscalls: Option<Vec<u32>>,
    pub max_threads: Option<u32>,
    /// Count completed syscalls per process too (the dashboard's process list).
    pub count_processes: bool,
    /// The breakdown (hist --by).
    pub by: By,
    /// Bound of the breakdown's (key, syscall) pairs.
    pub max_keys: Option<u32>,
    pub outcome: Outcome,
}

/// `--max-keys N`, bounded.
pub fn parse_max_keys(s: &str) -> std::result::Result<u32, String> {
    crate::core::system::parse_store_size(
        s,
        1 << 22,
        "more pairs than a breakdown can show",
        16,
        (std::mem::size_of::<crate::model::abi::types::hist>() * crate::core::system::online_cpus())
            as u64,
    )
}

/// One load of the tracer as core::lifecycle drives it: the config, and the dashboard's
/// run-time filter set before anything is attached.
struct HistLoad<'a> {
    cfg: &'a Config,
    live: Option<&'a LiveFilter>,
}

impl Declaration for HistLoad<'_> {
    type Kind = HistKind;
    type Way = Way;
    const DRIVERS: &'static [Driver] = &[
        Driver::new("starts_hash", "--max-threads"),
        Driver::new("by_hists", "--max-keys"),
    ];

    fn scope(&self) -> &Scope {
        &self.cfg.scope
    }

    fn prepare(&self, way: Way) -> Result<()> {
        if let Some(list) = &self.cfg.syscalls {
            if let Some(nr) = list.iter().find(|&&nr| nr >= MAX_SYSCALLS) {
                bail!("syscall number {nr} is beyond the {MAX_SYSCALLS} btrace tracks");
            }
        }
        if way.hook == Hook::Tracepoint {
            crate::core::system::ensure_tracefs()?;
        }
        Ok(())
    }

    // The classic tracepoint way must not depend on raw_tp.
    fn tree_on_raw_tp(&self, way: Way) -> bool {
        way.hook != Hook::Tracepoint
    }

    fn configure(&self, way: Way, open: &mut OpenHistSkel<'_>) -> Result<()> {
        {
            let ro = rodata::typed(&mut open.maps.rodata_data);
            if let Some(list) = &self.cfg.syscalls {
                ro.filter_syscalls = true;
                for &nr in list {
                    ro.syscall_traced[nr as usize] = 1;
                }
            }
            ro.count_processes = self.cfg.count_processes;
            crate::syscall_nrs!(
                &mut *ro,
                nr_exit,
                nr_exit_group,
                nr_clone,
                nr_fork,
                nr_vfork,
                nr_clone3
            );
            ro.by = self.cfg.by.kernel();
            match self.cfg.outcome {
                Outcome::All => {}
                Outcome::Errors => ro.errors_only = true,
                Outcome::Errno(e) => ro.errno_only = e as u32,
            }
        }
        let (by_keys, by_names) = match self.cfg.by {
            By::Nothing => (1, 1),
            By::Cgroup => (self.cfg.max_keys.unwrap_or(BY_MAX_KEYS), 1),
            _ => {
                let n = self.cfg.max_keys.unwrap_or(BY_MAX_KEYS);
                (n, n)
            }
        };
        open.maps.by_hists.set_max_entries(by_keys)?;
        open.maps.by_comms.set_max_entries(by_names)?;
        if !self.cfg.count_processes {
            open.maps.proc_counts.set_max_entries(1)?;
            open.maps.proc_comms.set_max_entries(1)?;
        } else {
            open.maps.proc_counts.set_max_entries(MAX_PROCS)?;
            open.maps.proc_comms.set_max_entries(MAX_PROCS)?;
        }
        // Each way is an entry/exit pair of programs; only the chosen pair is loaded.
        let p = &mut open.progs;
        let pairs = [
            (
                Hook::TpBtf,
                Store::TaskStorage,
                &mut p.hist_enter_btf_task,
                &mut p.hist_exit_btf_task,
            ),
            (
                Hook::TpBtf,
                Store::Hash,
                &mut p.hist_enter_btf_hash,
                &mut p.hist_exit_btf_hash,
            ),
            (
                Hook::RawTp,
                Store::Hash,
                &mut p.hist_enter_raw,
                &mut p.hist_exit_raw,
            ),
            (
                Hook::Tracepoint,
                Store::Hash,
                &mut p.hist_enter_tp,
                &mut p.hist_exit_tp,
            ),
        ];
        for (hook, store, enter, exit) in pairs {
            let chosen = way == Way { hook, store };
            enter.set_autoload(chosen);
            exit.set_autoload(chosen);
        }
        // The hash store frees a thread's entry when the thread ends, on the hook family
        // of the way (the classic tracepoint way must not depend on raw_tp).
        let hash = way.store == Store::Hash;
        p.starts_reap_raw
            .set_autoload(hash && way.hook != Hook::Tracepoint);
        p.starts_reap_tp
            .set_autoload(hash && way.hook == Hook::Tracepoint);
        p.hist_exec_comm.set_autoload(
            self.cfg.count_processes || matches!(self.cfg.by, By::Process | By::Thread),
        );
        match way.store {
            Store::TaskStorage => {
                open.maps.starts_hash.set_max_entries(1)?;
            }
            Store::Hash => {
                let entries = self
                    .cfg
                    .max_threads
                    .unwrap_or_else(crate::core::system::default_thread_entries);
                open.maps.starts_task.set_autocreate(false)?;
                open.maps.starts_hash.set_max_entries(entries)?;
            }
        }
        Ok(())
    }

    fn loaded(&self, _way: Way, hist: &HistSkel<'_>) -> Result<()> {
        match self.live {
            // Filtered from the first event on: set before attaching.
            Some(filter) => write_live(hist, Some(filter), None),
            None => Ok(()),
        }
    }
}

/// Opens, configures and loads the programs of one way without attaching them.
pub fn open_load(way: Way, cfg: &Config) -> Result<Hist> {
    lifecycle::open_load(&HistLoad { cfg, live: None }, way)
}

/// Loads and attaches the first of `ways` this kernel accepts.
pub fn load_first(ways: &[Way], cfg: &Config) -> Result<(Way, Hist, Links)> {
    lifecycle::load_first(&HistLoad { cfg, live: None }, ways)
}

/// Loads and attaches the cheapest way this kernel accepts.
pub fn load_best(cfg: &Config) -> Result<(Way, Hist, Links)> {
    load_first(&ways(cfg.max_threads.is_some()), cfg)
}

/// Writes the run-time settings: the process filter (unlike the load-time scope it
/// applies at syscall entry only, so an exit always completes the entry its thread
/// stored) and the epoch before which stored entries are stale.
fn write_live(hist: &HistSkel<'_>, live: Option<&LiveFilter>, epoch_ns: Option<u64>) -> Result<()> {
    crate::tracers::write_live!(hist, live, epoch_ns)
}

/// Empties the per-thread hash store. For re-attaching after a detach: threads that
/// ended meanwhile were not reaped, and every entry left is stale anyway.
fn clear_thread_store(hist: &Hist) {
    let map = &hist.maps.starts_hash;
    let keys: Vec<Vec<u8>> = map.keys().collect();
    for k in keys {
        let _ = map.delete(&k);
    }
}

/// One process's cumulative count of completed syscalls, CPUs summed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcCount {
    pub tgid: u32,
    pub count: u64,
    /// The process's name when it was last counted on a new CPU or called exec.
    pub comm: String,
}

/// Every process in the per-process table (a `count_processes` load), CPUs summed.
fn read_processes(hist: &Hist) -> Result<Vec<ProcCount>> {
    let map = &hist.maps.proc_counts;
    let mut out = Vec::new();
    for key in map.keys() {
        let Ok(raw) = <[u8; 4]>::try_from(key.as_slice()) else {
            continue;
        };
        let tgid = u32::from_ne_bytes(raw);
        let count = percpu::values::<u64>(map, tgid)?.iter().sum();
        let comm = hist
            .maps
            .proc_comms
            .lookup(&key, MapFlags::ANY)?
            .and_then(|v| plain::from_bytes::<types::proc_comm>(&v).ok().copied())
            .map(|n| comm_text(&n.comm))
            .unwrap_or_default();
        out.push(ProcCount { tgid, count, comm });
    }
    Ok(out)
}

/// Cumulative per-syscall histograms as the kernel holds them, CPUs summed.
/// Many keys are read in one batch; a few (a --syscalls list) one by one.
pub fn read_totals(hist: &Hist, keys: &[u32]) -> Result<Vec<(u32, Log2Hist)>> {
    let map = &hist.maps.hists;
    if keys.len() > 16 {
        let all = percpu::all_values::<crate::model::abi::types::hist>(map)?;
        return Ok(keys
            .iter()
            .map(|&nr| {
                let h = all
                    .get(nr as usize)
                    .map(|c| Log2Hist::sum_cpus(c))
                    .unwrap_or_default();
                (nr, h)
            })
            .collect());
    }
    keys.iter()
        .map(|&nr| {
            let cpus = percpu::values::<crate::model::abi::types::hist>(map, nr)?;
            Ok((nr, Log2Hist::sum_cpus(&cpus)))
        })
        .collect()
}

/// The breakdown's histograms, cumulative, CPUs summed: (process, thread or cgroup id,
/// syscall slot, histogram).
pub fn read_by(hist: &Hist) -> Result<Vec<(u64, u32, Log2Hist)>> {
    Ok(
        percpu::hash_entries::<types::by_key, crate::model::abi::types::hist>(&hist.maps.by_hists)?
            .into_iter()
            .map(|(key, cpus)| (key.id, key.nr, Log2Hist::sum_cpus(&cpus)))
            .collect(),
    )
}

/// The name of a process or thread of the breakdown (when first counted, and after exec).
pub fn by_name(hist: &Hist, id: u64) -> Option<String> {
    let v = hist
        .maps
        .by_comms
        .lookup(&id.to_ne_bytes(), MapFlags::ANY)
        .ok()??;
    let c: types::proc_comm = crate::core::skel::plain_prefix(&v);
    Some(comm_text(&c.comm))
}

pub fn losses(hist: &Hist) -> Result<Losses> {
    Losses::read(&hist.maps.losses)?.with_missed(hist.object())
}

/// The syscall tracer as the dashboard and the exporter hold it: loaded once, counting
/// per process too, attached and detached at run time.
pub struct SyscallTracer {
    hist: Hist,
    way: Way,
    links: Links,
    /// Per-process counts at the last sample, to notice processes that ended.
    seen: Deltas<u32, u64>,
    /// The exporter's `--by cgroup` (loaded with the per-cgroup breakdown).
    by_cgroup: Option<CgroupSplit<u32>>,
}

/// The exporter's `--by cgroup` table: (cgroup, syscall) pairs for the labelled cgroups
/// plus 32 more (cgroups beyond the cap, whose entries are deleted at each scrape), 48
/// per cgroup (a service calls a few dozen syscalls; the pairs are one pool), at most
/// 2^20 pairs.
pub fn by_cgroup_pairs(cap: u32) -> u32 {
    cap.saturating_add(32).saturating_mul(48).min(1 << 20)
}

impl SyscallTracer {
    /// For the dashboard, per-process counts too; for the exporter, only the histograms.
    pub fn load(load: &LoadConfig) -> Result<Box<dyn Tracer>> {
        let cfg = Config {
            count_processes: load.mode == Mode::Dashboard,
            scope: load.make_scope()?,
            by: if load.by_cgroup.is_some() {
                By::Cgroup
            } else {
                By::Nothing
            },
            max_keys: load.by_cgroup.map(by_cgroup_pairs),
            ..Default::default()
        };
        let decl = HistLoad {
            cfg: &cfg,
            live: Some(&load.filter),
        };
        let (way, hist, links) = lifecycle::load_first(&decl, &ways(false))?;
        Ok(Box::new(SyscallTracer {
            hist,
            way,
            links,
            seen: Deltas::default(),
            by_cgroup: load.by_cgroup.map(|_| CgroupSplit::default()),
        }))
    }

    /// Processes that counted nothing since the last sample and have ended are removed
    /// from the kernel's tables (after being reported once), so they hold only live or
    /// just-ended processes.
    fn processes(&mut self) -> Result<Vec<ProcCount>> {
        let procs = read_processes(&self.hist)?;
        for p in &procs {
            let idle = self.seen.step(&p.tgid, &p.count) == 0;
            if idle && !std::path::Path::new(&format!("/proc/{}", p.tgid)).exists() {
                let _ = self.hist.maps.proc_counts.delete(&p.tgid.to_ne_bytes());
                let _ = self.hist.maps.proc_comms.delete(&p.tgid.to_ne_bytes());
                self.seen.forget(&p.tgid);
            }
        }
        Ok(procs)
    }
}

impl Tracer for SyscallTracer {
    crate::tracers::loaded_tracer!("syscalls", hist);

    /// Entries stored before the detach are marked stale first, so no latency spans the
    /// time the tracer was off.
    fn attach(&mut self) -> Result<()> {
        if self.attached() {
            return Ok(());
        }
        write_live(&self.hist, None, Some(crate::core::system::monotonic_ns()))?;
        clear_thread_store(&self.hist);
        self.links = attach::attach_loaded(self.hist.object())?;
        Ok(())
    }

    fn set_filter(&mut self, f: &LiveFilter) -> Result<()> {
        write_live(&self.hist, Some(f), None)
    }

    fn losses(&self) -> Result<Losses> {
        losses(&self.hist)
    }

    fn sample(&mut self) -> Result<Sample> {
        let keys: Vec<u32> = (0..MAX_SYSCALLS).collect();
        Ok(Sample::Syscalls {
            hists: read_totals(&self.hist, &keys)?,
            processes: self.processes()?,
        })
    }

    fn metrics(&mut self, out: &mut Metrics, cgroups: Option<&mut CgroupLabels>) -> Result<()> {
        let keys: Vec<u32> = (0..MAX_SYSCALLS).collect();
        // The totals first, then the breakdown (see CgroupSplit::split).
        let totals = read_totals(&self.hist, &keys)?;
        match (cgroups, self.by_cgroup.as_mut()) {
            (Some(labels), Some(split)) => {
                let entries = read_by(&self.hist)?;
                let map = &self.hist.maps.by_hists;
                let series = split.split(labels, &totals, entries, |id, nr| {
                    // struct by_key: id, nr, _pad.
                    let mut raw = [0u8; std::mem::size_of::<types::by_key>()];
                    raw[..8].copy_from_slice(&id.to_ne_bytes());
                    raw[8..12].copy_from_slice(&nr.to_ne_bytes());
                    let _ = map.delete(&raw);
                });
                super::metrics::by_cgroup(&series, out);
            }
            _ => super::metrics::families(&totals, out),
        }
        Ok(())
    }
}

/// Whether the tracer works here, by loading and attaching it for real (btrace doctor).
pub fn check() -> Result<String> {
    let (way, _hist, _links) = load_best(&Config::default())?;
    Ok(match crate::core::features::syscall_hooks_skip_runs() {
        Some(why) => format!(
            "via {way}, the exact way here: {why}, where tp_btf and raw_tp programs get skipped"
        ),
        None => format!("via {way}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_store_skips_task_storage() {
        assert!(ways(true).iter().all(|w| w.store == Store::Hash));
        let first = if crate::core::features::syscall_hooks_skip_runs().is_some() {
            Way {
                hook: Hook::Tracepoint,
                store: Store::Hash,
            }
        } else {
            Way {
                hook: Hook::TpBtf,
                store: Store::TaskStorage,
            }
        };
        assert_eq!(ways(false)[0], first);
        assert!(ways(false).contains(&Way {
            hook: Hook::TpBtf,
            store: Store::TaskStorage
        }));
    }
}
