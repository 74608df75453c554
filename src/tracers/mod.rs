// SPDX-License-Identifier: Apache-2.0
//! The tracers: one folder each (`NAME/`), holding its kernel program (`NAME.bpf.c`, and
//! `NAME.h` for what it shares with user space), the leaf module owning its skeleton
//! (`skel.rs`), the tracer (`tracer.rs`: its core::lifecycle declaration, i.e. settings,
//! ways and hooks; filters, reads, losses) and, when it has one, its command
//! (`command.rs`, used only by main.rs).
//!
//! What the dashboard, doctor and the exporter walk over is the small object-safe
//! [`Tracer`] trait and the [`REGISTRY`]; commands use their tracer's own functions, so
//! the decoding path stays monomorphic.

pub mod biolatency;
pub mod exec;
pub mod func;
pub mod hist;
pub mod kprobe;
pub mod offcpu;
pub mod opens;
pub mod profile;
pub mod runq;
pub mod tcp;
pub mod tracepoint;
pub mod uprobe;

use std::os::fd::BorrowedFd;

use anyhow::Result;

use crate::core::cgroup_labels::CgroupLabels;
use crate::core::losses::Losses;
use crate::core::scope::{FilterArgs, Scope};
use crate::model::histogram::Log2Hist;
use crate::model::metrics::Metrics;

/// Run-time filters a long-lived owner (the dashboard) changes without reloading; each
/// tracer applies the parts that mean something to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveFilter {
    /// Only this process (thread group id).
    pub pid: Option<u32>,
    /// Only TCP connections with this port at either end.
    pub port: Option<u16>,
    /// Only tasks in this cgroup v2 or below it (a path under the cgroup v2 mount, or an
    /// id); for TCP, connections whose owner was there when it was learned.
    pub cgroup: Option<String>,
}

/// Who holds a long-lived tracer, which decides what its kernel side keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// The dashboard: events and per-process tables, a run-time pid filter.
    #[default]
    Dashboard,
    /// The exporter: only what is read at scrape time (counters and histograms kept in
    /// the kernel; no events, no per-process tables), under a fixed scope.
    Exporter,
}

/// How a long-lived owner loads a tracer.
#[derive(Clone, Debug, Default)]
pub struct LoadConfig {
    /// The run-time filter the tracer starts with.
    pub filter: LiveFilter,
    /// The load-time scope (--cgroup, --tid, --comm); -p/-c do not apply here.
    pub scope: FilterArgs,
    pub mode: Mode,
    /// The exporter's `--by cgroup`: its `--max-cgroups` (the kernel keeps the tracer's
    /// figures per cgroup too, where it can).
    pub by_cgroup: Option<u32>,
}

impl LoadConfig {
    /// The scope a tracer is loaded with: the fixed part from `scope`, and for the
    /// dashboard a process tree kept for its pid filter.
    pub fn make_scope(&self) -> Result<Scope> {
        let a = &self.scope;
        let mut scope = if a.cgroups.is_empty() && a.tid.is_none() && a.comm.is_none() {
            Scope::default()
        } else {
            Scope::filtered(a)?
        };
        scope.live_tree = self.mode == Mode::Dashboard;
        Ok(scope)
    }
}

/// Writes a long-lived tracer's run-time settings into its loaded skeleton `$skel` (maps
/// `scope_procs`, `scope_cgroups` and `.bss`, whose `epoch_ns` entries stored before are
/// stale): the dashboard's filter `$live` (its process tree and cgroup slot prepared
/// before the `.bss` switch turns it on), and the epoch `$epoch_ns`; None leaves either
/// as it is. A macro because each skeleton has its own `.bss` type.
macro_rules! write_live {
    ($skel:expr, $live:expr, $epoch_ns:expr) => {{
        let skel = $skel;
        let live: Option<&$crate::tracers::LiveFilter> = $live;
        let epoch_ns: Option<u64> = $epoch_ns;
        let mut cgroup_id = 0;
        if let Some(f) = live {
            $crate::core::scope::prepare_live_tree(&skel.maps.scope_procs, f.pid)?;
            cgroup_id = $crate::core::scope::install_live_cgroup(
                &skel.maps.scope_cgroups,
                f.cgroup.as_deref(),
            )?;
        }
        $crate::core::skel::write_bss(&skel.maps.bss, skel.maps.bss_data.as_deref(), |bss| {
            if let Some(f) = live {
                $crate::set_live_scope!(bss, f, cgroup_id);
            }
            if let Some(e) = epoch_ns {
                bss.epoch_ns = e;
            }
        })
    }};
}
pub(crate) use write_live;

/// The [`Tracer`] methods a loaded tracer `$name` answers alike from its fields: `way`
/// (how it was loaded, shown as its hook), `links` (empty while detached) and its loaded
/// skeleton `$skel` (its programs).
macro_rules! loaded_tracer {
    ($name:literal, $skel:ident) => {
        fn name(&self) -> &'static str {
            $name
        }

        fn hook(&self) -> String {
            self.way.to_string()
        }

        fn attached(&self) -> bool {
            !self.links.is_empty()
        }

        fn detach(&mut self) {
            self.links.clear();
        }

        fn programs(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
            $crate::core::attach::loaded_programs(self.$skel.object())
        }

        fn program_names(&self) -> Vec<String> {
            $crate::core::attach::loaded_program_names(self.$skel.object())
        }
    };
}
pub(crate) use loaded_tracer;

/// What a tracer measured: cumulative figures (histograms, counts) or the events that
/// arrived since the last call.
pub enum Sample {
    /// Per-syscall histograms and per-process counts of completed syscalls, since load.
    Syscalls {
        hists: Vec<(u32, Log2Hist)>,
        processes: Vec<hist::tracer::ProcCount>,
    },
    /// Run-queue latency since load.
    RunQueue(Box<Log2Hist>),
    /// TCP state transitions since the last sample.
    Tcp(Vec<tcp::event::TcpEvent>),
}

/// A tracer loaded once and kept: attached and detached at run time (the programs stay
/// loaded, so a toggle costs no reload), filtered, sampled.
pub trait Tracer {
    /// The group name shown by the dashboard and the exporter (`syscalls`, `tcp`, `runq`).
    fn name(&self) -> &'static str;
    /// The way it was loaded, e.g. `tp_btf+task_storage`.
    fn hook(&self) -> String;
    fn attached(&self) -> bool;
    /// Re-attaches after a detach; what was stored before the detach is not paired with
    /// anything after it.
    fn attach(&mut self) -> Result<()>;
    fn detach(&mut self);
    fn set_filter(&mut self, filter: &LiveFilter) -> Result<()>;
    /// What it could not record, since load.
    fn losses(&self) -> Result<Losses>;
    /// Its loaded programs (for the kernel's run-time statistics).
    fn programs(&self) -> Vec<BorrowedFd<'_>>;
    /// The whole names of [`Tracer::programs`], in the same order; empty when unknown (the
    /// kernel's 15-character names are used then).
    fn program_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn sample(&mut self) -> Result<Sample>;
    /// For tracers that stream events: what arrived since the last call. A long-lived
    /// owner calls it often so the ring buffer never fills; cumulative tracers have none.
    fn events(&mut self) -> Result<Option<Sample>> {
        Ok(None)
    }
    /// Its metric families for the exporter (declared beside the tracer, in its
    /// `metrics.rs`), read from the kernel's maps; tracers without any add nothing. With
    /// `cgroups` (`--by cgroup`), the families the tracer keeps per cgroup get a `cgroup`
    /// label from it.
    fn metrics(&mut self, _out: &mut Metrics, _cgroups: Option<&mut CgroupLabels>) -> Result<()> {
        Ok(())
    }
}

/// One way of a command to work, as doctor reports it.
pub struct Check {
    /// The mode this check is about (`--hook fentry`), if the command has several.
    pub mode: Option<&'static str>,
    /// How it works here, or why it does not.
    pub result: Result<String>,
    /// What would make it work.
    pub fix: &'static str,
}

/// Loads a tracer for a long-lived owner.
pub type LoadFn = fn(&LoadConfig) -> Result<Box<dyn Tracer>>;

/// One tracer, as the dashboard, doctor and the exporter know it.
pub struct Entry {
    /// The group name (`syscalls`), also the exporter's and dashboard's.
    pub name: &'static str,
    /// What it measures, in a few words.
    pub what: &'static str,
    /// The command that runs it alone.
    pub command: &'static str,
    /// Whether it works here, found by loading and attaching it for real.
    pub checks: fn() -> Vec<Check>,
    /// Loads it for a long-lived owner (attached, filtered from its first event), for the
    /// tracers the dashboard and the exporter show.
    pub load: Option<LoadFn>,
}

/// Every tracer, in the order the dashboard numbers its groups (1, 2, 3...).
pub const REGISTRY: &[Entry] = &[
    Entry {
        name: "syscalls",
        what: "syscall latency histograms",
        command: "hist",
        checks: || {
            vec![Check {
                mode: None,
                result: hist::tracer::check(),
                fix: "needs BTF and one of tp_btf, raw_tp or classic tracepoints on raw_syscalls (Linux 5.8+ with BTF)",
            }]
        },
        load: Some(hist::tracer::SyscallTracer::load),
    },
    Entry {
        name: "tcp",
        what: "TCP connection lifecycle",
        command: "tcp",
        checks: || {
            vec![Check {
                mode: None,
                result: tcp::tracer::check(),
                fix: "needs the sock:inet_sock_set_state tracepoint (Linux 4.16+) through tp_btf or tracefs, and a ring buffer (5.8+)",
            }]
        },
        load: Some(tcp::tracer::TcpTracer::load),
    },
    Entry {
        name: "runq",
        what: "run-queue latency",
        command: "runqlat",
        checks: || {
            vec![Check {
                mode: None,
                result: runq::tracer::check(),
                fix: "needs the sched_wakeup/sched_switch tracepoints through tp_btf or raw_tp",
            }]
        },
        load: Some(runq::tracer::RunqTracer::load),
    },
    Entry {
        name: "exec",
        what: "program executions",
        command: "exec",
        checks: || {
            vec![Check {
                mode: None,
                result: exec::tracer::check(),
                fix: "needs the syscalls:sys_{enter,exit}_execve tracepoints (CONFIG_FTRACE_SYSCALLS) or raw_tp, and a ring buffer (5.8+)",
            }]
        },
        load: None,
    },
    Entry {
        name: "open",
        what: "file opens",
        command: "open",
        checks: || {
            vec![Check {
                mode: None,
                result: opens::tracer::check(),
                fix: "needs the syscalls:sys_{enter,exit}_open* tracepoints (CONFIG_FTRACE_SYSCALLS) or raw_tp, and a ring buffer (5.8+)",
            }]
        },
        load: None,
    },
    Entry {
        name: "biolatency",
        what: "block I/O latency",
        command: "biolatency",
        checks: || {
            vec![Check {
                mode: None,
                result: biolatency::tracer::check(),
                fix: "needs the block:block_rq_issue/block_rq_complete tracepoints through tp_btf or raw_tp",
            }]
        },
        load: None,
    },
    Entry {
        name: "tracepoint",
        what: "any tracepoint as events",
        command: "tracepoint",
        checks: || {
            vec![Check {
                mode: None,
                result: tracepoint::tracer::check(),
                fix: "needs tracefs (CONFIG_TRACING) and a ring buffer (Linux 5.8+)",
            }]
        },
        load: None,
    },
    Entry {
        name: "profile",
        what: "CPU samples by stack",
        command: "profile",
        checks: || {
            vec![Check {
                mode: None,
                result: profile::tracer::check(),
                fix:
                    "needs perf events (CONFIG_PERF_EVENTS, the software cpu-clock) and CAP_PERFMON",
            }]
        },
        load: None,
    },
    Entry {
        name: "offcpu",
        what: "time blocked by stack",
        command: "offcpu",
        checks: || {
            vec![Check {
                mode: None,
                result: offcpu::tracer::check(),
                fix: "needs the sched_switch tracepoint through tp_btf or raw_tp, and stack maps",
            }]
        },
        load: None,
    },
    Entry {
        name: "kprobe",
        what: "kernel function calls",
        command: "kprobe",
        checks: kprobe::tracer::checks,
        load: None,
    },
    Entry {
        name: "uprobe",
        what: "user-space function calls and USDT probes",
        command: "uprobe",
        checks: uprobe::tracer::checks,
        load: None,
    },
];

/// The registry entry of a group name.
pub fn entry(name: &str) -> Option<&'static Entry> {
    REGISTRY.iter().find(|e| e.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        for (i, e) in REGISTRY.iter().enumerate() {
            assert!(
                REGISTRY[i + 1..].iter().all(|o| o.name != e.name),
                "{}",
                e.name
            );
            assert_eq!(entry(e.name).unwrap().command, e.command);
        }
    }
}
