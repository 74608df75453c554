//! The numbers of one refresh: what every source counted since the previous one, next
//! to the totals since the start. The terminal view and the JSON records both come from
//! a `Snapshot`, so they always agree.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use serde_json::{json, Value};

use crate::hist::{self, MAX_SYSCALLS};
use crate::histogram::Log2Hist;
use crate::sched;
use crate::syscall_names;

use super::conns::{ClosedConn, OpenConn, TcpInterval};
use super::sources::{GroupId, Sources};
use super::stats::ProgRunTime;
use crate::system::monotonic_ns;

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
}

pub struct ProbeRow {
    pub group: GroupId,
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
    /// Busiest first; only syscalls that completed in this interval.
    pub syscalls: Vec<SyscallRow>,
    /// Most syscalls first; only processes that completed a syscall in this interval.
    pub processes: Vec<ProcRow>,
    /// Run-queue latency this interval and since the start (None: group unavailable).
    pub sched: Option<(Log2Hist, Log2Hist)>,
    /// None: the tcp group is unavailable.
    pub tcp: Option<TcpView>,
    pub probes: Vec<ProbeRow>,
}

/// Turns the kernel's cumulative counters into per-interval ones.
pub struct Sampler {
    started: Instant,
    last: Instant,
    stats_on: bool,
    syscalls: Vec<Log2Hist>,
    processes: HashMap<u32, u64>,
    sched: Log2Hist,
    runs: HashMap<GroupId, ProgRunTime>,
    ncpus: usize,
}

impl Sampler {
    /// `stats_on`: whether BPF run-time statistics are enabled (else no run figures).
    pub fn new(src: &Sources, stats_on: bool) -> Result<Sampler> {
        let now = Instant::now();
        let mut s = Sampler {
            started: now,
            last: now,
            stats_on,
            syscalls: vec![Log2Hist::default(); MAX_SYSCALLS as usize],
            processes: HashMap::new(),
            sched: Log2Hist::default(),
            runs: HashMap::new(),
            // Share of the machine: the CPUs online now.
            ncpus: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize,
        };
        // Run counters start from what the programs ran before the first interval.
        for g in GroupId::ALL {
            s.runs.insert(g, src.run_time(g)?);
        }
        Ok(s)
    }

    pub fn sample(&mut self, src: &mut Sources) -> Result<Snapshot> {
        src.drain_tcp()?;
        let now = Instant::now();
        let interval_s = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        let snap = Snapshot {
            time_s: now.duration_since(self.started).as_secs_f64(),
            interval_s,
            ncpus: self.ncpus,
            pid_filter: src.pid_filter(),
            port_filter: src.port_filter(),
            syscalls: self.syscalls(src)?,
            processes: self.processes(src)?,
            sched: self.sched(src)?,
            tcp: src.tcp.as_mut().map(|t| TcpView {
                interval: t.conns.take_interval(),
                open: t.conns.open(),
                recently_closed: t.conns.recently_closed(),
                now_ns: monotonic_ns(),
            }),
            probes: self.probes(src)?,
        };
        Ok(snap)
    }

    fn syscalls(&mut self, src: &Sources) -> Result<Vec<SyscallRow>> {
        let keys: Vec<u32> = (0..MAX_SYSCALLS).collect();
        let mut rows = Vec::new();
        for (nr, now) in hist::read_totals(&src.hist, &keys)? {
            let prev = &mut self.syscalls[nr as usize];
            let interval = now.since(prev);
            *prev = now;
            if interval.count > 0 {
                rows.push(SyscallRow {
                    nr,
                    name: syscall_names::name(nr),
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
        Ok(rows)
    }

    /// Processes that exited and counted nothing more this interval are removed from
    /// the kernel's tables, so they hold only live (or just-ended) processes.
    fn processes(&mut self, src: &Sources) -> Result<Vec<ProcRow>> {
        let mut rows = Vec::new();
        for p in hist::read_processes(&src.hist)? {
            let prev = self.processes.insert(p.tgid, p.count).unwrap_or(0);
            // A smaller count means the slot was freed and the pid reused.
            let count = if p.count >= prev {
                p.count - prev
            } else {
                p.count
            };
            if count == 0 {
                if !std::path::Path::new(&format!("/proc/{}", p.tgid)).exists() {
                    hist::forget_process(&src.hist, p.tgid);
                    self.processes.remove(&p.tgid);
                }
                continue;
            }
            rows.push(ProcRow {
                tgid: p.tgid,
                comm: p.comm,
                count,
                total: p.count,
            });
        }
        rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.tgid.cmp(&b.tgid)));
        Ok(rows)
    }

    fn sched(&mut self, src: &Sources) -> Result<Option<(Log2Hist, Log2Hist)>> {
        let Some(skel) = &src.sched else {
            return Ok(None);
        };
        let now = sched::read_total(skel)?;
        let interval = now.since(&self.sched);
        self.sched = now;
        Ok(Some((interval, now)))
    }

    fn probes(&mut self, src: &Sources) -> Result<Vec<ProbeRow>> {
        let mut rows = Vec::new();
        for g in &src.groups {
            let (run, total_runs) = if self.stats_on {
                let now = src.run_time(g.id)?;
                let prev = self.runs.insert(g.id, now).unwrap_or_default();
                (Some(now.since(&prev)), Some(now.run_cnt))
            } else {
                (None, None)
            };
            let losses = src.losses(g.id)?;
            let missed = total_runs.map(|_| self.runs[&g.id].recursion_misses);
            rows.push(ProbeRow {
                group: g.id,
                hook: g.hook.clone(),
                unavailable: g.unavailable.clone(),
                attached: g.attached(),
                programs: src.programs(g.id),
                links: g.links(),
                run,
                total_runs,
                lost: losses.map_full + losses.ringbuf + missed.unwrap_or(0),
            });
        }
        Ok(rows)
    }
}

impl Snapshot {
    /// Group states change between refreshes when a key toggles one.
    pub fn refresh_groups(&mut self, src: &Sources) {
        for row in &mut self.probes {
            let g = src.group(row.group);
            row.attached = g.attached();
            row.links = g.links();
        }
        self.pid_filter = src.pid_filter();
        self.port_filter = src.port_filter();
    }

    pub fn to_json(&self) -> Value {
        let per_s = |n: u64| n as f64 / self.interval_s.max(1e-9);
        json!({
            "type": "snapshot",
            "time_s": round3(self.time_s),
            "interval_s": round3(self.interval_s),
            "filter": {"pid": self.pid_filter, "port": self.port_filter},
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
                "pid": p.tgid, "comm": p.comm, "count": p.count,
                "rate_per_s": round3(per_s(p.count)), "total": p.total,
            })).collect::<Vec<_>>(),
            "sched": self.sched.as_ref().map(|(i, t)| json!({
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
            "group": p.group.name(), "key": p.group.key().to_string(),
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
            "state": crate::tcp_event::state_name(c.state),
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
