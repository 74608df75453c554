//! `btrace hist`: per-syscall latency histograms computed in the kernel.

use std::fmt;

use anyhow::{bail, Result};
use clap::Args;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use serde_json::json;

use crate::attach;
use crate::histogram::{fmt_ns, Log2Hist, BUCKETS};
use crate::output::Output;
use crate::percpu::{self, Losses};
use crate::session::{Session, Step, TraceArgs};
use crate::syscall_names;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/hist.skel.rs"));
}
pub use skel::HistSkel;
use skel::{types, HistSkelBuilder};

/// Must match MAX_SYSCALLS in btrace.h.
pub const MAX_SYSCALLS: u32 = 512;
/// Least default bound of the per-thread hash store (threads that make traced syscalls,
/// alive at once); a busier machine gets twice its current thread count.
const MIN_DEFAULT_MAX_THREADS: u32 = 32768;

/// The hash store's default bound: room for every thread alive now, twice over.
fn default_max_threads() -> u32 {
    // /proc/loadavg's fourth field is "runnable/total" scheduling entities (threads).
    let threads = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok())
        .unwrap_or(0u32);
    threads.saturating_mul(2).max(MIN_DEFAULT_MAX_THREADS)
}

#[derive(Args, Debug, Clone)]
pub struct HistArgs {
    #[command(flatten)]
    pub common: TraceArgs,
    /// Only these syscalls (comma-separated names, e.g. read,write,openat)
    #[arg(long, value_name = "NAMES")]
    pub syscalls: Option<String>,
    /// Show only the N busiest syscalls
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Bound of the per-thread entry store (threads making traced syscalls, alive at
    /// once; default: twice the threads alive now, at least 32768); setting it selects
    /// the bounded hash store instead of task storage
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_threads: Option<u32>,
    /// Only this hook (tests use it to exercise every fallback on one kernel)
    #[arg(long, value_enum, hide = true)]
    pub hook: Option<Hook>,
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
pub fn ways(bounded: bool) -> Vec<Way> {
    let mut v = Vec::new();
    if !bounded {
        v.push(Way {
            hook: Hook::TpBtf,
            store: Store::TaskStorage,
        });
    }
    v.push(Way {
        hook: Hook::TpBtf,
        store: Store::Hash,
    });
    v.push(Way {
        hook: Hook::RawTp,
        store: Store::Hash,
    });
    v.push(Way {
        hook: Hook::Tracepoint,
        store: Store::Hash,
    });
    v
}

/// What the kernel side is asked to do, fixed before load.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub tgid: Option<u32>,
    pub syscalls: Option<Vec<u32>>,
    pub max_threads: Option<u32>,
    /// Count completed syscalls per process too (btrace top's process list).
    pub count_processes: bool,
}

/// Opens, configures, loads and attaches the programs of one way.
pub fn load(way: Way, filter: &Filter) -> Result<HistSkel<'static>> {
    let mut skel = open_load(way, filter)?;
    skel.attach()?;
    Ok(skel)
}

/// Opens, configures and loads the programs of one way without attaching them: for an
/// owner that attaches and detaches them itself (`attach::attach_loaded`).
pub fn open_load(way: Way, filter: &Filter) -> Result<HistSkel<'static>> {
    let mut open = HistSkelBuilder::default().open(attach::skel_storage())?;
    {
        let ro = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("hist has rodata");
        ro.filter_tgid = filter.tgid.unwrap_or(0);
        if let Some(list) = &filter.syscalls {
            ro.filter_syscalls = true;
            for &nr in list {
                if nr >= MAX_SYSCALLS {
                    bail!("syscall number {nr} is beyond the {MAX_SYSCALLS} btrace tracks");
                }
                ro.syscall_traced[nr as usize] = 1;
            }
        }
        ro.count_processes = filter.count_processes;
    }
    if !filter.count_processes {
        open.maps.proc_counts.set_max_entries(1)?;
        open.maps.proc_comms.set_max_entries(1)?;
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
    p.hist_reap_raw
        .set_autoload(hash && way.hook != Hook::Tracepoint);
    p.hist_reap_tp
        .set_autoload(hash && way.hook == Hook::Tracepoint);
    p.hist_exec_comm.set_autoload(filter.count_processes);
    match way.store {
        Store::TaskStorage => {
            open.maps.starts_hash.set_max_entries(1)?;
        }
        Store::Hash => {
            open.maps.starts_task.set_autocreate(false)?;
            open.maps
                .starts_hash
                .set_max_entries(filter.max_threads.unwrap_or_else(default_max_threads))?;
        }
    }
    if way.hook == Hook::Tracepoint {
        crate::system::ensure_tracefs()?;
    }
    Ok(open.load()?)
}

/// Writes the run-time process filter (0 = every process) without reloading. Unlike
/// the load-time filter it applies at syscall entry only: an exit always completes the
/// entry its thread stored.
pub fn set_live_tgid(skel: &mut HistSkel, tgid: u32) {
    if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
        bss.live_tgid = tgid;
    }
}

/// Marks entries stored before `now_ns` (CLOCK_MONOTONIC) as stale: set before
/// re-attaching, so an exit is never paired with an entry from before a detach.
pub fn set_epoch(skel: &mut HistSkel, now_ns: u64) {
    if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
        bss.epoch_ns = now_ns;
    }
}

/// Empties the per-thread hash store. For re-attaching after a detach: threads that
/// ended meanwhile were not reaped, and every entry left is stale anyway.
pub fn clear_thread_store(skel: &HistSkel) {
    let map = &skel.maps.starts_hash;
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

// SAFETY: a plain C struct of bytes, as generated from the BPF object's BTF.
unsafe impl plain::Plain for types::proc_comm {}

/// Every process in the per-process table (a `count_processes` load), CPUs summed.
pub fn read_processes(skel: &HistSkel) -> Result<Vec<ProcCount>> {
    let map = &skel.maps.proc_counts;
    let mut out = Vec::new();
    for key in map.keys() {
        let Ok(raw) = <[u8; 4]>::try_from(key.as_slice()) else {
            continue;
        };
        let tgid = u32::from_ne_bytes(raw);
        let count = percpu::values::<u64>(map, tgid)?.iter().sum();
        let comm = skel
            .maps
            .proc_comms
            .lookup(&key, MapFlags::ANY)?
            .and_then(|v| plain::from_bytes::<types::proc_comm>(&v).ok().copied())
            .map(|n| comm_string(&n.comm))
            .unwrap_or_default();
        out.push(ProcCount { tgid, count, comm });
    }
    Ok(out)
}

/// Forgets a process (it has exited): frees its slot in the kernel's table.
pub fn forget_process(skel: &HistSkel, tgid: u32) {
    let _ = skel.maps.proc_counts.delete(&tgid.to_ne_bytes());
    let _ = skel.maps.proc_comms.delete(&tgid.to_ne_bytes());
}

fn comm_string(raw: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Loads the cheapest way this kernel accepts.
pub fn load_best(filter: &Filter) -> Result<(Way, HistSkel<'static>)> {
    load_first(&ways(filter.max_threads.is_some()), filter)
}

/// Loads the first of `ways` this kernel accepts.
pub fn load_first(ways: &[Way], filter: &Filter) -> Result<(Way, HistSkel<'static>)> {
    attach::first_that_works(ways, |way| load(way, filter))
}

impl From<&types::hist> for Log2Hist {
    fn from(h: &types::hist) -> Self {
        let mut buckets = [0u64; BUCKETS];
        buckets.copy_from_slice(&h.buckets[..BUCKETS]);
        Log2Hist {
            count: h.count,
            sum_ns: h.sum_ns,
            buckets,
        }
    }
}

// SAFETY: a plain C struct of integers, as generated from the BPF object's BTF.
unsafe impl plain::Plain for types::hist {}

fn sum_cpus(cpus: &[types::hist]) -> Log2Hist {
    let mut sum = Log2Hist::default();
    for cpu in cpus {
        sum.add(&Log2Hist::from(cpu));
    }
    sum
}

/// Cumulative per-syscall histograms as the kernel holds them, CPUs summed.
/// Many keys are read in one batch; a few (a --syscalls list) one by one.
pub fn read_totals(skel: &HistSkel, keys: &[u32]) -> Result<Vec<(u32, Log2Hist)>> {
    if keys.len() > 16 {
        let all = percpu::all_values::<types::hist>(&skel.maps.hists)?;
        return Ok(keys
            .iter()
            .map(|&nr| {
                (
                    nr,
                    all.get(nr as usize)
                        .map(|c| sum_cpus(c))
                        .unwrap_or_default(),
                )
            })
            .collect());
    }
    keys.iter()
        .map(|&nr| {
            Ok((
                nr,
                sum_cpus(&percpu::values::<types::hist>(&skel.maps.hists, nr)?),
            ))
        })
        .collect()
}

/// Per-syscall histograms, turned from cumulative counters into per-interval ones.
struct Reader {
    keys: Vec<u32>,
    previous: Vec<(u32, Log2Hist)>,
}

impl Reader {
    fn new(filter: &Filter) -> Self {
        let keys = filter
            .syscalls
            .clone()
            .unwrap_or_else(|| (0..MAX_SYSCALLS).collect());
        Reader {
            previous: keys.iter().map(|&k| (k, Log2Hist::default())).collect(),
            keys,
        }
    }

    /// What accumulated since the last call, busiest first, without idle syscalls.
    fn since_last(&mut self, skel: &HistSkel) -> Result<Vec<(u32, Log2Hist)>> {
        let now = read_totals(skel, &self.keys)?;
        let mut delta: Vec<(u32, Log2Hist)> = now
            .iter()
            .zip(&self.previous)
            .map(|((nr, n), (_, p))| (*nr, n.since(p)))
            .filter(|(_, h)| h.count > 0)
            .collect();
        self.previous = now;
        delta.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
        Ok(delta)
    }
}

fn print_hists(out: &mut Output, hists: &[(u32, Log2Hist)], top: Option<usize>) -> Result<()> {
    let shown = &hists[..top.unwrap_or(usize::MAX).min(hists.len())];
    for (nr, h) in shown {
        let name = syscall_names::name(*nr);
        if out.json {
            out.record(&json!({
                "type": "hist", "syscall": name, "nr": nr, "unit": "us",
                "total": h.count, "sum_ns": h.sum_ns, "buckets": h.json_buckets(),
            }))?;
        } else {
            out.line(&format!(
                "@{name}: {} call{}, avg {}, total {}   (buckets: latency in us)",
                h.count,
                if h.count == 1 { "" } else { "s" },
                fmt_ns(h.avg_ns().unwrap_or(0.0)),
                fmt_ns(h.sum_ns as f64)
            ))?;
            for row in h.render(40) {
                out.line(&row)?;
            }
            out.line("")?;
        }
    }
    if !out.json && hists.is_empty() {
        out.line("(no syscalls completed)")?;
    }
    Ok(())
}

pub fn run(args: HistArgs) -> Result<()> {
    let c = &args.common;
    crate::system::preflight()?;
    let syscalls = args
        .syscalls
        .as_deref()
        .map(syscall_names::parse_list)
        .transpose()?;
    let mut session = Session::new(c)?;
    let filter = Filter {
        tgid: session.tgid(),
        syscalls,
        max_threads: args.max_threads,
        count_processes: false,
    };
    let mut candidates = ways(filter.max_threads.is_some());
    candidates.retain(|w| args.hook.is_none_or(|h| w.hook == h));
    let (way, skel) = load_first(&candidates, &filter)?;
    let mut out = Output::new(c.json);
    let mut reader = Reader::new(&filter);
    let mut interval_no = 0u64;
    session.attached("syscalls")?;
    let end = session.run(|step| {
        match step {
            // The histograms live in the kernel; there are no events to consume.
            Step::Poll(wait) => std::thread::sleep(wait),
            Step::Interval => {
                interval_no += 1;
                if !out.json {
                    out.line(&format!("--- interval {interval_no} ---"))?;
                }
                print_hists(&mut out, &reader.since_last(&skel)?, args.top)?;
                out.flush()?;
            }
        }
        Ok(())
    })?;
    if c.interval.is_none() || !reader.since_last_is_empty(&skel)? {
        print_hists(&mut out, &reader.since_last(&skel)?, args.top)?;
    }
    let losses = Losses::read(&skel.maps.losses)?;
    let secs = session.elapsed().as_secs_f64();
    if out.json {
        out.record(&session.summary(
            end,
            json!({
                "hook": way.hook.to_string(), "store": way.store.to_string(),
                "dropped": {"map_full": losses.map_full, "no_entry": losses.no_entry},
            }),
        ))?;
    } else {
        out.line(&format!(
            "Traced {secs:.1} s via {way}. Dropped: {} entries (store full), {} exits without a recorded entry (syscalls begun before tracing, or dropped).",
            losses.map_full, losses.no_entry
        ))?;
    }
    out.flush()?;
    Ok(())
}

impl Reader {
    /// With --interval, the last partial interval is printed only if it holds anything.
    fn since_last_is_empty(&self, skel: &HistSkel) -> Result<bool> {
        let now = read_totals(skel, &self.keys)?;
        Ok(now
            .iter()
            .zip(&self.previous)
            .all(|((_, n), (_, p))| n.count == p.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_and_user_bucket_counts_agree() {
        let h = types::hist::default();
        assert_eq!(h.buckets.len(), BUCKETS);
    }

    #[test]
    fn bounded_store_skips_task_storage() {
        assert!(ways(true).iter().all(|w| w.store == Store::Hash));
        assert_eq!(
            ways(false)[0],
            Way {
                hook: Hook::TpBtf,
                store: Store::TaskStorage
            }
        );
    }
}
