// SPDX-License-Identifier: Apache-2.0
//! The TCP lifecycle tracer (`sock:inet_sock_set_state`): loaded with fallback, steered by
//! its run-time filter ([`TcpFilter`]), read as a stream of [`TcpEvent`]s. Used by
//! `btrace tcp` and by the dashboard.

use std::fmt;

use anyhow::{Context, Result};
use libbpf_rs::skel::Skel;
use libbpf_rs::MapCore;

use crate::core::attach::{self, Links};
use crate::core::cgroup_labels::{CgroupLabels, CgroupSplit, Figures};
use crate::core::kmem::Driver;
use crate::core::lifecycle::{self, Declaration};
use crate::core::losses::Losses;
use crate::core::rodata;
use crate::core::scope::Scope;
use crate::core::stream::EventStream;
use crate::model::histogram::Log2Hist;
use crate::model::metrics::Metrics;
use crate::tracers::{LiveFilter, LoadConfig, Mode, Sample, Tracer};

use super::event::{self, TcpEvent};
use super::filter::{FilterSpec, TcpFilter};
use super::skel::{OpenTcpSkel, Tcp, TcpKind};

/// Default bound of the per-socket store: sockets alive (between their first seen
/// transition and CLOSE) at once.
pub const DEFAULT_MAX_CONNS: u32 = 16384;

/// Sockets the bounded store may hold at most: far beyond any machine's open TCP sockets
/// (bounded by file descriptors), so a bigger bound is a mistake.
pub const MAX_CONNS_LIMIT: u32 = 1 << 22;

/// `--max-conns N`, bounded (see [`crate::core::system::parse_store_size`]).
pub fn parse_max_conns(s: &str) -> std::result::Result<u32, String> {
    crate::core::system::parse_store_size(
        s,
        MAX_CONNS_LIMIT,
        "more sockets than a machine keeps open at once",
        8,
        std::mem::size_of::<super::skel::types::tcp_conn>() as u64,
    )
}

/// The hook on sock:inet_sock_set_state, cheapest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Hook {
    #[value(name = "tp_btf")]
    TpBtf,
    Tracepoint,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::TpBtf => "tp_btf",
            Hook::Tracepoint => "tracepoint",
        })
    }
}

/// Where the per-socket state waits between transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// Socket-local storage (tp_btf, 5.11+): unbounded, freed with the socket.
    SkStorage,
    /// A bounded hash (`--max-conns`), every kernel.
    Hash,
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Store::SkStorage => "sk_storage",
            Store::Hash => "hash",
        })
    }
}

/// A hook with a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Way {
    pub hook: Hook,
    pub store: Store,
}

impl fmt::Display for Way {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.hook, self.store)
    }
}

/// Ways to try, cheapest first: socket storage is only for tp_btf, and not when the
/// user bounds the store (`--max-conns`); `hook` keeps one hook only.
pub fn ways(bounded: bool, hook: Option<Hook>) -> Vec<Way> {
    let mut v = Vec::new();
    if !bounded {
        v.push(Way {
            hook: Hook::TpBtf,
            store: Store::SkStorage,
        });
    }
    for hook in [Hook::TpBtf, Hook::Tracepoint] {
        v.push(Way {
            hook,
            store: Store::Hash,
        });
    }
    v.retain(|w| hook.is_none_or(|h| w.hook == h));
    v
}

/// What is fixed at load time (the filter is not: see [`TcpFilter`]).
#[derive(Clone, Copy, Debug)]
pub struct TcpOptions {
    /// Send only the transitions that end an established connection.
    pub life_only: bool,
    /// Bound of the per-socket store.
    pub max_conns: u32,
    /// Send events at all (the exporter reads only the counters).
    pub events: bool,
    /// Keep the connection counters in the kernel ([`stats`]).
    pub stats: bool,
    /// The ring buffer's size (--buffer-size; default: tcp.bpf.c's, 1 MiB).
    pub ring_bytes: Option<u32>,
    /// Keep the counters per socket cgroup too, in a table of this many cgroups at most
    /// (the exporter's `--by cgroup`).
    pub cgroup_entries: Option<u32>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            life_only: false,
            max_conns: DEFAULT_MAX_CONNS,
            events: true,
            stats: false,
            ring_bytes: None,
            cgroup_entries: None,
        }
    }
}

/// The connection counters the kernel keeps (with [`TcpOptions::stats`]), CPUs summed:
/// enum tcp_stat in tcp.h; in all, or of one cgroup's sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    pub opened_active: u64,
    pub opened_passive: u64,
    pub closed: u64,
    pub resets: u64,
    pub connect_failures: u64,
    pub tx_bytes: u64,
    /// Closed connections whose sent bytes are not exact (not counted in tx_bytes).
    pub tx_unknown: u64,
    pub rx_bytes: u64,
    /// ESTABLISHED to CLOSE, closed connections.
    pub durations: Log2Hist,
}

impl TcpStats {
    /// From the counters indexed by enum tcp_stat.
    fn from_counters(c: &[u64; TCP_STATS], durations: Log2Hist) -> TcpStats {
        use super::skel::types::tcp_stat as S;
        let at = |k: S| c[k.0 as usize];
        TcpStats {
            opened_active: at(S::TCP_STAT_OPEN_ACTIVE),
            opened_passive: at(S::TCP_STAT_OPEN_PASSIVE),
            closed: at(S::TCP_STAT_CLOSED),
            resets: at(S::TCP_STAT_RESET),
            connect_failures: at(S::TCP_STAT_CONNECT_FAILED),
            tx_bytes: at(S::TCP_STAT_TX_BYTES),
            tx_unknown: at(S::TCP_STAT_TX_UNKNOWN),
            rx_bytes: at(S::TCP_STAT_RX_BYTES),
            durations,
        }
    }

    /// The counters indexed by enum tcp_stat, as [`from_counters`](Self::from_counters)
    /// takes them.
    fn counters(&self) -> [u64; TCP_STATS] {
        use super::skel::types::tcp_stat as S;
        let mut c = [0; TCP_STATS];
        for (k, v) in [
            (S::TCP_STAT_OPEN_ACTIVE, self.opened_active),
            (S::TCP_STAT_OPEN_PASSIVE, self.opened_passive),
            (S::TCP_STAT_CLOSED, self.closed),
            (S::TCP_STAT_RESET, self.resets),
            (S::TCP_STAT_CONNECT_FAILED, self.connect_failures),
            (S::TCP_STAT_TX_BYTES, self.tx_bytes),
            (S::TCP_STAT_TX_UNKNOWN, self.tx_unknown),
            (S::TCP_STAT_RX_BYTES, self.rx_bytes),
        ] {
            c[k.0 as usize] = v;
        }
        c
    }

    /// `f` of each figure and the same figure of `other`: the counters, and the duration
    /// histogram's count, sum and buckets.
    fn zip_with(&self, other: &TcpStats, f: impl Fn(u64, u64) -> u64 + Copy) -> TcpStats {
        let (a, b) = (self.counters(), other.counters());
        TcpStats::from_counters(
            &std::array::from_fn(|i| f(a[i], b[i])),
            self.durations.field_by_field(&other.durations, f),
        )
    }
}

/// Split by cgroup as histograms are (see [`CgroupSplit`]): counters and the duration
/// histogram field by field; a cgroup weighs its connections opened and ended.
impl Figures for TcpStats {
    fn add(&mut self, o: &Self) {
        *self = self.zip_with(o, |a, b| a + b);
    }
    fn minus(&self, o: &Self) -> Self {
        self.zip_with(o, u64::saturating_sub)
    }
    fn at_least(&mut self, o: &Self) {
        *self = self.zip_with(o, u64::max);
    }
    fn weight(&self) -> u64 {
        self.opened_active + self.opened_passive + self.closed + self.connect_failures
    }
}

/// The number of tcp_stat counters.
const TCP_STATS: usize = super::skel::types::tcp_stat::TCP_STATS.0 as usize;

pub fn stats(tcp: &Tcp) -> Result<TcpStats> {
    let mut counters = [0u64; TCP_STATS];
    for (k, c) in counters.iter_mut().enumerate() {
        *c = crate::core::percpu::values::<u64>(&tcp.maps.tcp_stats, k as u32)?
            .iter()
            .sum();
    }
    let durations = Log2Hist::sum_cpus(&crate::core::percpu::values::<
        crate::model::abi::types::hist,
    >(&tcp.maps.tcp_durations, 0)?);
    Ok(TcpStats::from_counters(&counters, durations))
}

/// The figures of each socket cgroup (with [`TcpOptions::cgroup_entries`]), CPUs summed.
pub fn stats_by_cgroup(tcp: &Tcp) -> Result<Vec<(u64, TcpStats)>> {
    use super::skel::types::tcp_cgroup_figures;
    let entries =
        crate::core::percpu::hash_entries::<u64, tcp_cgroup_figures>(&tcp.maps.tcp_cgroup_figures)?;
    Ok(entries
        .into_iter()
        .map(|(id, cpus)| {
            let mut counters = [0u64; TCP_STATS];
            let mut durations = Log2Hist::default();
            for cpu in &cpus {
                for (sum, v) in counters.iter_mut().zip(cpu.stats) {
                    *sum += v;
                }
                durations.add(&Log2Hist {
                    count: cpu.durations.count,
                    sum_ns: cpu.durations.sum_ns,
                    buckets: cpu.durations.buckets,
                });
            }
            (id, TcpStats::from_counters(&counters, durations))
        })
        .collect())
}

/// One load of the tracer as core::lifecycle drives it.
struct TcpLoad<'a> {
    opts: &'a TcpOptions,
    scope: &'a Scope,
}

impl Declaration for TcpLoad<'_> {
    type Kind = TcpKind;
    type Way = Way;
    const DRIVERS: &'static [Driver] = &[
        crate::core::kmem::RING,
        Driver::new("tcp_conns", "--max-conns"),
        Driver::new("tcp_cgroup_figures", "--max-cgroups"),
    ];

    fn scope(&self) -> &Scope {
        self.scope
    }

    fn prepare(&self, way: Way) -> Result<()> {
        if way.hook == Hook::Tracepoint {
            crate::core::system::ensure_tracefs()?;
        }
        Ok(())
    }

    fn tree_on_raw_tp(&self, way: Way) -> bool {
        way.hook == Hook::TpBtf
    }

    fn configure(&self, way: Way, open: &mut OpenTcpSkel<'_>) -> Result<()> {
        let opts = self.opts;
        {
            let ro = rodata::typed(&mut open.maps.rodata_data);
            ro.life_only = opts.life_only;
            ro.events_on = opts.events;
            ro.stats_on = opts.stats;
            ro.stats_by_cgroup = opts.cgroup_entries.is_some();
        }
        if let Some(n) = opts.cgroup_entries {
            open.maps.tcp_cgroup_figures.set_max_entries(n)?;
        }
        if let Some(bytes) = opts.ring_bytes {
            open.maps.events.set_max_entries(bytes)?;
        }
        let sk = way.store == Store::SkStorage;
        if sk {
            open.maps.tcp_conns.set_max_entries(1)?;
        } else {
            open.maps.tcp_sk_conns.set_autocreate(false)?;
            open.maps.tcp_conns.set_max_entries(opts.max_conns)?;
        }
        let p = &mut open.progs;
        p.tcp_state_btf_sk.set_autoload(sk);
        p.tcp_state_btf.set_autoload(!sk && way.hook == Hook::TpBtf);
        p.tcp_state_tp.set_autoload(way.hook == Hook::Tracepoint);
        Ok(())
    }
}

/// Opens and loads the programs of one way and sets the filter, without attaching: the
/// first transition the tracer sees after [`attach()`] is already filtered.
pub fn open_load(
    way: Way,
    opts: &TcpOptions,
    spec: &FilterSpec,
    scope: &Scope,
) -> Result<(Tcp, TcpFilter)> {
    let tcp = lifecycle::open_load(&TcpLoad { opts, scope }, way)?;
    let mut filter = TcpFilter::new(&tcp)?;
    filter.apply(spec)?;
    Ok((tcp, filter))
}

/// Attaches a loaded tracer; dropping the links detaches it.
pub fn attach(tcp: &Tcp) -> Result<Links> {
    attach::attach_loaded(tcp.object())
}

/// Loads and attaches the first of `ways` this kernel accepts, with `spec` as the
/// initial filter.
pub fn load_first(
    ways: &[Way],
    opts: &TcpOptions,
    spec: &FilterSpec,
    scope: &Scope,
) -> Result<(Way, Tcp, TcpFilter, Links)> {
    let (way, (tcp, filter, links)) = attach::first_that_works(ways, |w| {
        let (tcp, filter) = open_load(w, opts, spec, scope)?;
        let links = lifecycle::attach(&TcpLoad { opts, scope }, w, &tcp)?;
        Ok((tcp, filter, links))
    })?;
    Ok((way, tcp, filter, links))
}

/// Loads and attaches the cheapest way this kernel accepts.
pub fn load_best(
    opts: &TcpOptions,
    spec: &FilterSpec,
    scope: &Scope,
) -> Result<(Way, Tcp, TcpFilter, Links)> {
    load_first(&ways(false, None), opts, spec, scope)
}

/// What the tracer counts beside its losses (enum tcp_count in tcp.h), CPUs summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounts {
    /// Sockets born while the bounded store was full: reported without owner or times.
    pub untracked_sockets: u64,
    /// Transitions a pid filter left out because their socket's owner was unknown.
    pub unattributed: u64,
}

pub fn counts(tcp: &Tcp) -> Result<TcpCounts> {
    use super::skel::types::tcp_count;
    let sum = |k: tcp_count| {
        crate::core::percpu::values::<u64>(&tcp.maps.tcp_counts, k.0).map(|v| v.iter().sum::<u64>())
    };
    Ok(TcpCounts {
        untracked_sockets: sum(tcp_count::TCP_UNTRACKED)?,
        unattributed: sum(tcp_count::TCP_UNATTRIBUTED)?,
    })
}

/// The tracer's events, decoded.
pub fn events(tcp: &Tcp) -> Result<EventStream<TcpEvent>> {
    EventStream::new(&tcp.maps.events, event::decode).context("reading tcp events")
}

pub fn losses(tcp: &Tcp) -> Result<Losses> {
    Losses::read(&tcp.maps.losses)?.with_missed(tcp.object())
}

/// The tcp tracer as the dashboard and the exporter hold it.
pub struct TcpTracer {
    tcp: Tcp,
    way: Way,
    filter: TcpFilter,
    events: EventStream<TcpEvent>,
    links: Links,
    /// The dashboard's cgroup filter, applied here to the owner's cgroup each event
    /// carries (the kernel program keeps no run-time cgroup test for sockets).
    live_cgroup: Option<crate::core::scope::LiveCgroup>,
    /// The exporter's `--by cgroup` (loaded with the per-cgroup counters).
    by_cgroup: Option<CgroupSplit<(), TcpStats>>,
}

impl TcpTracer {
    /// For the dashboard, events; for the exporter, only the kernel's counters.
    pub fn load(cfg: &LoadConfig) -> Result<Box<dyn Tracer>> {
        let f = &cfg.filter;
        let spec = FilterSpec {
            ports: f.port.into_iter().collect(),
            ..Default::default()
        };
        let exporter = cfg.mode == Mode::Exporter;
        // Labelled cgroups, and room for those that come and go between scrapes (the
        // entries of cgroups sent to "other" are deleted at each scrape).
        let by_cgroup = cfg.by_cgroup.filter(|_| exporter);
        let opts = TcpOptions {
            events: !exporter,
            stats: exporter,
            cgroup_entries: by_cgroup.map(|cap| cap.saturating_add(1024)),
            ..Default::default()
        };
        let (way, tcp, mut filter, links) = load_best(&opts, &spec, &cfg.make_scope()?)?;
        filter.set_pid_tree(f.pid)?;
        let events = events(&tcp)?;
        let live_cgroup = match &f.cgroup {
            Some(spec) => Some(crate::core::scope::LiveCgroup::resolve(spec)?.0),
            None => None,
        };
        Ok(Box::new(TcpTracer {
            tcp,
            way,
            filter,
            events,
            links,
            live_cgroup,
            by_cgroup: by_cgroup.map(|_| CgroupSplit::default()),
        }))
    }
}

impl Tracer for TcpTracer {
    crate::tracers::loaded_tracer!("tcp", tcp);

    fn attach(&mut self) -> Result<()> {
        if self.links.is_empty() {
            self.links = attach(&self.tcp)?;
        }
        Ok(())
    }

    fn set_filter(&mut self, f: &LiveFilter) -> Result<()> {
        self.live_cgroup = match &f.cgroup {
            Some(spec) => Some(crate::core::scope::LiveCgroup::resolve(spec)?.0),
            None => None,
        };
        self.filter.set_pid_tree(f.pid)?;
        self.filter
            .set_ports(&f.port.into_iter().collect::<Vec<_>>())
    }

    fn losses(&self) -> Result<Losses> {
        losses(&self.tcp)
    }

    fn sample(&mut self) -> Result<Sample> {
        // Called on the owner's timer: what is waiting, bounded so one call stays short.
        let mut events = self.events.take_ready(16 * crate::core::stream::BATCH)?;
        if let Some(c) = &self.live_cgroup {
            let ids = c.subtree_ids();
            events.retain(|e| e.cgroup_id.is_some_and(|id| ids.contains(&id)));
        }
        Ok(Sample::Tcp(events))
    }

    fn events(&mut self) -> Result<Option<Sample>> {
        self.sample().map(Some)
    }

    /// By cgroup, the socket's (see sock_cgroup_id in tcp.bpf.c): a passive open
    /// completes in softirq, before any process owns the socket, but the socket already
    /// belongs to its listener's cgroup.
    fn metrics(&mut self, out: &mut Metrics, cgroups: Option<&mut CgroupLabels>) -> Result<()> {
        // The totals first, then the breakdown (see CgroupSplit::split).
        let total = stats(&self.tcp)?;
        let series = match (cgroups, self.by_cgroup.as_mut()) {
            (Some(labels), Some(split)) => {
                let entries = stats_by_cgroup(&self.tcp)?
                    .into_iter()
                    .map(|(id, s)| (id, (), s))
                    .collect();
                let map = &self.tcp.maps.tcp_cgroup_figures;
                split
                    .split(labels, &[((), total)], entries, |id, _| {
                        let _ = map.delete(&id.to_ne_bytes());
                    })
                    .into_iter()
                    .map(|(label, (), s)| (Some(label), s))
                    .collect()
            }
            _ => vec![(None, total)],
        };
        super::metrics::families(&series, out);
        Ok(())
    }
}

/// Whether the tracer works here, by loading and attaching it for real (btrace doctor).
pub fn check() -> Result<String> {
    let (way, ..) = load_best(
        &TcpOptions::default(),
        &FilterSpec::default(),
        &Scope::default(),
    )?;
    Ok(format!("via {way}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cgroup_labels::OTHER;

    fn figures(n: u64) -> TcpStats {
        let mut s = TcpStats {
            opened_active: n,
            opened_passive: n,
            closed: 2 * n,
            tx_bytes: 1000 * n,
            rx_bytes: 1000 * n,
            ..Default::default()
        };
        s.durations.count = 2 * n;
        s.durations.buckets[3] = 2 * n;
        s
    }

    /// The tcp counters split as histograms do: `other` is the totals minus the labelled
    /// cgroup, field by field, and never goes back.
    #[test]
    fn other_is_the_totals_minus_the_labelled_cgroups() {
        let mut labels = CgroupLabels::new(1);
        let root = crate::core::scope::cgroup2_mount().expect("cgroup v2 mounted");
        let root_id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&root).unwrap());
        let mut split = CgroupSplit::<(), TcpStats>::default();
        let series = split.split(
            &mut labels,
            &[((), figures(10))],
            vec![(root_id, (), figures(3))],
            |_, _| {},
        );
        let got: Vec<(String, TcpStats)> = series.into_iter().map(|(l, (), s)| (l, s)).collect();
        assert_eq!(got, [("/".into(), figures(3)), (OTHER.into(), figures(7))]);
        // The kernel added to the root's entry between the reads of the totals and of
        // the entries: other lags, it does not go back.
        let series = split.split(
            &mut labels,
            &[((), figures(10))],
            vec![(root_id, (), figures(4))],
            |_, _| {},
        );
        assert_eq!(series[1].2, figures(7));
    }
}
