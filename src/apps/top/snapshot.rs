// SPDX-License-Identifier: Apache-2.0
//! The numbers of one refresh: what every source counted since the previous one, next
//! to the totals since the start. The terminal view and the JSON records both come from
//! a `Snapshot`, so they always agree.

use std::time::Instant;

use anyhow::Result;
use serde_json::{json, Value};

use crate::core::runstats::ProgRunTime;
use crate::core::system::monotonic_ns;
use crate::model::delta::Deltas;
use crate::model::histogram::Log2Hist;
use crate::resolve::syscalls;
use crate::tracers::hist::tracer::ProcCount;
use crate::tracers::Sample;

use super::conns::{ClosedConn, Conns, OpenConn, TcpInterval};
use super::groups::Groups;

pub struct SyscallRow {
    pub nr: u32,
    pub name: String,
    /// This interval.
    pub interval: Log2Hist,
    /// Since the dashboard started.
    pub total: u64,
}

pub struct ProcRow {
    pub tgid: u32,
    pub comm: String,
    pub count: u64,
    pub total: u64,
    /// Its cgroup v2, below the mount (`/system.slice/x.service`), read this interval;
    /// None when /proc no longer has the process.
    pub cgroup: Option<String>,
}

/// Cgroups the process table shows when grouped (`c`); the rest are one `other` row.
pub const MAX_CGROUP_ROWS: usize = 64;

/// One row of the process table grouped by cgroup.
#[derive(Debug, PartialEq, Eq)]
pub struct CgroupRow {
    /// The cgroup below the mount; None for the `other` row (and processes gone).
    pub cgroup: Option<String>,
    pub processes: usize,
    pub count: u64,
}

/// The processes of `rows` summed by cgroup, busiest first, at most [`MAX_CGROUP_ROWS`]
/// named; the remainder (and processes whose cgroup could not be read) in one last row.
pub fn by_cgroup(rows: &[ProcRow]) -> Vec<CgroupRow> {
    let mut sums: std::collections::HashMap<Option<&str>, (usize, u64)> = Default::default();
    for r in rows {
        let e = sums.entry(r.cgroup.as_deref()).or_default();
        e.0 += 1;
        e.1 += r.count;
    }
    let mut named: Vec<CgroupRow> = sums
        .iter()
        .filter_map(|(c, (n, count))| {
            c.map(|c| CgroupRow {
                cgroup: Some(c.to_string()),
                processes: *n,
                count: *count,
            })
        })
        .collect();
    named.sort_by(|a, b| b.count.cmp(&a.count).then(a.cgroup.cmp(&b.cgroup)));
    let mut other = sums.get(&None).copied().unwrap_or_default();
    for r in named.drain(MAX_CGROUP_ROWS.min(named.len())..) {
        other.0 += r.processes;
        other.1 += r.count;
    }
    if other.0 > 0 {
        named.push(CgroupRow {
            cgroup: None,
            processes: other.0,
            count: other.1,
        });
    }
    named
}

/// A process's cgroup v2 path, from /proc/PID/cgroup's "0::" line.
fn cgroup_of(tgid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

pub struct ProbeRow {
    pub group: &'static str,
    pub key: char,
    pub hook: String,
    pub unavailable: Option<String>,
    pub attached: bool,
    pub programs: usize,
    pub links: usize,
    /// This interval's runs and run time; None when run-time statistics are off.
    pub run: Option<ProgRunTime>,
    pub total_runs: Option<u64>,
    /// Kernel-counted drops since the start: full maps, ring buffer, recursion misses.
    pub lost: u64,
}

pub struct TcpView {
    pub interval: TcpInterval,
    pub open: Vec<OpenConn>,
    /// The last connections closed (newest first), not only this interval's.
    pub recently_closed: Vec<ClosedConn>,
    /// CLOCK_MONOTONIC ns when taken: ages are measured to it.
    pub now_ns: u64,
}

pub struct Snapshot {
    /// Seconds since the dashboard started, and the length of this interval.
    pub time_s: f64,
    pub interval_s: f64,
    pub ncpus: usize,
    pub pid_filter: Option<u32>,
    pub port_filter: Option<u16>,
    pub cgroup_filter: Option<String>,
    /// Busiest first; only syscalls that completed in this interval.
    pub syscalls: Vec<SyscallRow>,
    /// Most syscalls first; only processes that completed a syscall in this interval.
    pub processes: Vec<ProcRow>,
    /// Run-queue latency this interval and since the start (None: group unavailable).
    pub runq: Option<(Log2Hist, Log2Hist)>,
    /// None: the tcp group is unavailable.
    pub tcp: Option<TcpView>,
    pub probes: Vec<ProbeRow>,
}

/// Turns the kernel's cumulative counters into per-interval ones, and the tcp tracer's
/// events into the connection table.
pub struct Sampler {
    started: Instant,
    last: Instant,
    stats_on: bool,
    syscalls: Deltas<u32, Log2Hist>,
    processes: Deltas<u32, u64>,
    runq: Deltas<(), Log2Hist>,
    runs: Deltas<&'static str, ProgRunTime>,
    conns: Conns,
    ncpus: usize,
}

impl Sampler {
    /// `stats_on`: whether BPF run-time statistics are enabled (else no run figures).
    pub fn new(groups: &Groups, stats_on: bool) -> Result<Sampler> {
        let now = Instant::now();
        let mut s = Sampler {
            started: now,
            last: now,
            stats_on,
            syscalls: Deltas::default(),
            processes: Deltas::default(),
            runq: Deltas::default(),
            runs: Deltas::default(),
            conns: Conns::default(),
            ncpus: crate::core::system::online_cpus(),
        };
        // Run counters start from what the programs ran before the first interval.
        for g in &groups.groups {
            s.runs.step(&g.name, &g.run_time()?);
        }
        Ok(s)
    }

    /// Takes what streaming tracers sent since the last call (the tcp table).
    pub fn drain(&mut self, groups: &mut Groups) -> Result<()> {
        for sample in groups.drain()? {
            self.take_events(sample);
        }
        Ok(())
    }

    fn take_events(&mut self, sample: Sample) {
        if let Sample::Tcp(events) = sample {
            for ev in &events {
                self.conns.add(ev);
            }
        }
    }

    pub fn sample(&mut self, groups: &mut Groups) -> Result<Snapshot> {
        let now = Instant::now();
        let interval_s = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        let mut snap = Snapshot {
            time_s: now.duration_since(self.started).as_secs_f64(),
            interval_s,
            ncpus: self.ncpus,
            pid_filter: groups.filter().pid,
            port_filter: groups.filter().port,
            cgroup_filter: cgroup_shown(groups),
            syscalls: Vec::new(),
            processes: Vec::new(),
            runq: None,
            tcp: None,
            probes: self.probes(groups)?,
        };
        for (name, sample) in groups.sample()? {
            match sample {
                Sample::Syscalls { hists, processes } => {
                    snap.syscalls = self.syscalls(&hists);
                    snap.processes = self.processes(processes);
                }
                Sample::RunQueue(total) => {
                    let interval = self.runq.step(&(), &total);
                    snap.runq = Some((interval, *total));
                }
                Sample::Tcp(events) => {
                    self.take_events(Sample::Tcp(events));
                    if groups.get(name).is_some_and(|g| g.tracer.is_some()) {
                        snap.tcp = Some(TcpView {
                            interval: self.conns.take_interval(),
                            open: self.conns.open(),
                            recently_closed: self.conns.recently_closed(),
                            now_ns: monotonic_ns(),
                        });
                    }
                }
            }
        }
        Ok(snap)
    }

    /// The tcp group was switched back on: transitions were missed meanwhile.
    pub fn tcp_reattached(&mut self) {
        self.conns.forget_open();
    }

    fn syscalls(&mut self, totals: &[(u32, Log2Hist)]) -> Vec<SyscallRow> {
        let mut rows = Vec::new();
        for (nr, now) in totals {
            let interval = self.syscalls.step(nr, now);
            if interval.count > 0 {
                rows.push(SyscallRow {
                    nr: *nr,
                    name: syscalls::name(*nr),
                    interval,
                    total: now.count,
                });
            }
        }
        rows.sort_by(|a, b| {
            b.interval
                .count
                .cmp(&a.interval.count)
                .then(a.nr.cmp(&b.nr))
        });
        rows
    }

    /// Processes that completed a syscall this interval, busiest first.
    fn processes(&mut self, procs: Vec<ProcCount>) -> Vec<ProcRow> {
        let mut rows: Vec<ProcRow> = procs
            .into_iter()
            .map(|p| ProcRow {
                tgid: p.tgid,
                count: self.processes.step(&p.tgid, &p.count),
                comm: p.comm,
                total: p.count,
                cgroup: None,
            })
            .filter(|r| r.count > 0)
            .collect();
        for r in &mut rows {
            r.cgroup = cgroup_of(r.tgid);
        }
        rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.tgid.cmp(&b.tgid)));
        rows
    }

    fn probes(&mut self, groups: &Groups) -> Result<Vec<ProbeRow>> {
        let mut rows = Vec::new();
        for g in &groups.groups {
            let (run, total_runs, missed) = if self.stats_on {
                let now = g.run_time()?;
                let run = self.runs.step(&g.name, &now);
                (Some(run), Some(now.run_cnt), now.recursion_misses)
            } else {
                (None, None, 0)
            };
            let losses = g.losses()?;
            rows.push(ProbeRow {
                group: g.name,
                key: g.key,
                hook: g.hook(),
                unavailable: g.unavailable.clone(),
                attached: g.attached(),
                programs: g.program_count(),
                links: g.link_count(),
                run,
                total_runs,
                lost: losses.ringbuf + losses.map_full + missed,
            });
        }
        Ok(rows)
    }
}

impl Snapshot {
    /// Group states change between refreshes when a key toggles one.
    pub fn refresh_groups(&mut self, groups: &Groups) {
        for row in &mut self.probes {
            if let Some(g) = groups.get(row.group) {
                row.attached = g.attached();
                row.links = g.link_count();
            }
        }
        self.pid_filter = groups.filter().pid;
        self.port_filter = groups.filter().port;
        self.cgroup_filter = cgroup_shown(groups);
    }

    pub fn to_json(&self) -> Value {
        let per_s = |n: u64| n as f64 / self.interval_s.max(1e-9);
        json!({
            "type": "snapshot",
            "time_s": round3(self.time_s),
            "interval_s": round3(self.interval_s),
            "filter": {"pid": self.pid_filter, "port": self.port_filter, "cgroup": self.cgroup_filter},
            "syscalls": self.syscalls.iter().map(|r| json!({
                "syscall": r.name, "nr": r.nr, "count": r.interval.count,
                "rate_per_s": round3(per_s(r.interval.count)),
                "total": r.total, "sum_ns": r.interval.sum_ns,
                "avg_ns": r.interval.avg_ns().map(round3),
                "p50_us": r.interval.percentile_us(50.0),
                "p99_us": r.interval.percentile_us(99.0),
                "unit": "us", "buckets": r.interval.json_buckets(),
            })).collect::<Vec<_>>(),
            "processes": self.processes.iter().map(|p| json!({
                "pid": p.tgid, "comm": p.comm, "cgroup": p.cgroup, "count": p.count,
                "rate_per_s": round3(per_s(p.count)), "total": p.total,
            })).collect::<Vec<_>>(),
            "runq": self.runq.as_ref().map(|(i, t)| json!({
                "what": "run-queue latency", "unit": "us", "count": i.count,
                "sum_ns": i.sum_ns, "avg_ns": i.avg_ns().map(round3),
                "p50_us": i.percentile_us(50.0), "p99_us": i.percentile_us(99.0),
                "total": t.count, "buckets": i.json_buckets(),
            })),
            "tcp": self.tcp.as_ref().map(tcp_json),
            "probes": self.probes.iter().map(|p| self.probe_json(p)).collect::<Vec<_>>(),
        })
    }

    fn probe_json(&self, p: &ProbeRow) -> Value {
        let figures = p
            .run
            .map(|r| ProbeFigures::of(&r, self.interval_s, self.ncpus));
        json!({
            "group": p.group, "key": p.key.to_string(),
            "available": p.unavailable.is_none(), "reason": p.unavailable,
            "hook": p.hook, "attached": p.attached,
            "programs": p.programs, "links": p.links,
            "run_cnt": p.run.map(|r| r.run_cnt), "run_time_ns": p.run.map(|r| r.run_time_ns),
            "total_run_cnt": p.total_runs,
            "events_per_s": figures.map(|f| round3(f.events_per_s)),
            "avg_ns": figures.and_then(|f| f.avg_ns).map(round3),
            "cpu_pct": figures.map(|f| round3(f.cpu_pct)),
            "lost": p.lost,
        })
    }
}

fn ms(ns: u64) -> f64 {
    round3(ns as f64 / 1e6)
}

/// Open connections now, and the ones closed in this interval.
fn tcp_json(t: &TcpView) -> Value {
    json!({
        "transitions": t.interval.transitions,
        "opened": t.interval.opened,
        "closed": t.interval.closed.len(),
        "open_now": t.open.len(),
        "open": t.open.iter().map(|c| json!({
            "pid": c.pid, "comm": c.comm, "local": c.local, "remote": c.remote,
            "state": c.state.name(),
            "age_ms": ms(t.now_ns.saturating_sub(c.first_seen_ns)),
        })).collect::<Vec<_>>(),
        "recently_closed": t.interval.closed.iter().map(|c| json!({
            "pid": c.pid, "comm": c.comm, "local": c.local, "remote": c.remote,
            "duration_ms": c.duration_ns.map(ms),
            "tx_bytes": c.tx_bytes, "rx_bytes": c.rx_bytes,
            "closed_ago_ms": ms(t.now_ns.saturating_sub(c.closed_ns)),
        })).collect::<Vec<_>>(),
    })
}

/// What the run-time statistics of one interval mean.
#[derive(Clone, Copy)]
pub struct ProbeFigures {
    pub events_per_s: f64,
    /// Average run time per program run; None when nothing ran.
    pub avg_ns: Option<f64>,
    /// Run time as a share of all CPUs' time in the interval.
    pub cpu_pct: f64,
}

impl ProbeFigures {
    pub fn of(run: &ProgRunTime, interval_s: f64, ncpus: usize) -> ProbeFigures {
        let secs = interval_s.max(1e-9);
        ProbeFigures {
            events_per_s: run.run_cnt as f64 / secs,
            avg_ns: (run.run_cnt > 0).then(|| run.run_time_ns as f64 / run.run_cnt as f64),
            cpu_pct: run.run_time_ns as f64 / (secs * 1e9 * ncpus.max(1) as f64) * 100.0,
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The cgroup filter as shown: its path below the cgroup v2 mount (`/system.slice/x`).
fn cgroup_shown(groups: &Groups) -> Option<String> {
    let path = groups.filter().cgroup.as_deref()?;
    let rel = crate::core::scope::cgroup2_mount().and_then(|root| {
        std::path::Path::new(path)
            .strip_prefix(root)
            .ok()
            .map(|r| format!("/{}", r.display()))
    });
    Some(rel.unwrap_or_else(|| path.to_string()))
}
