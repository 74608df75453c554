//! The TCP lifecycle tracer (`sock:inet_sock_set_state`): loaded with fallback, steered by
//! its run-time filter ([`TcpFilter`]), read as a stream of [`TcpEvent`]s. Used by
//! `btrace tcp` and by the dashboard.

use std::fmt;
use std::os::fd::BorrowedFd;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::Link;

use crate::core::attach;
use crate::core::losses::Losses;
use crate::core::stream::EventStream;
use crate::tracers::{LiveFilter, Sample, Tracer};

use super::event::{self, TcpEvent};
use super::filter::{FilterSpec, TcpFilter};
use super::skel::{Tcp, TcpSkelBuilder};

/// Default bound of the per-socket store: sockets alive (between their first seen
/// transition and CLOSE) at once.
pub const DEFAULT_MAX_CONNS: u32 = 16384;

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

pub const HOOKS: [Hook; 2] = [Hook::TpBtf, Hook::Tracepoint];

/// What is fixed at load time (the filter is not: see [`TcpFilter`]).
#[derive(Clone, Copy, Debug)]
pub struct TcpOptions {
    /// Send only the transitions that end an established connection.
    pub life_only: bool,
    /// Bound of the per-socket store.
    pub max_conns: u32,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            life_only: false,
            max_conns: DEFAULT_MAX_CONNS,
        }
    }
}

/// Opens and loads the programs of one hook and sets the filter, without attaching: the
/// first transition the tracer sees after [`attach`] is already filtered.
pub fn open_load(hook: Hook, opts: &TcpOptions, spec: &FilterSpec) -> Result<(Tcp, TcpFilter)> {
    if hook == Hook::Tracepoint {
        crate::core::system::ensure_tracefs()?;
    }
    let tcp = Tcp::new(|storage| {
        let mut open = TcpSkelBuilder::default().open(storage)?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect("tcp has rodata")
            .life_only = opts.life_only;
        open.maps.tcp_conns.set_max_entries(opts.max_conns)?;
        open.progs.tcp_state_btf.set_autoload(hook == Hook::TpBtf);
        open.progs
            .tcp_state_tp
            .set_autoload(hook == Hook::Tracepoint);
        Ok(open.load()?)
    })?;
    let mut filter = TcpFilter::new(&tcp)?;
    filter.apply(spec)?;
    Ok((tcp, filter))
}

/// Attaches a loaded tracer; dropping the links detaches it.
pub fn attach(tcp: &Tcp) -> Result<Vec<Link>> {
    attach::attach_loaded(tcp.object())
}

/// Loads and attaches the first of `hooks` this kernel accepts, with `spec` as the
/// initial filter.
pub fn load_first(
    hooks: &[Hook],
    opts: &TcpOptions,
    spec: &FilterSpec,
) -> Result<(Hook, Tcp, TcpFilter, Vec<Link>)> {
    let (hook, (tcp, filter, links)) = attach::first_that_works(hooks, |h| {
        let (tcp, filter) = open_load(h, opts, spec)?;
        let links = attach(&tcp)?;
        Ok((tcp, filter, links))
    })?;
    Ok((hook, tcp, filter, links))
}

/// Loads and attaches the cheapest hook this kernel accepts.
pub fn load_best(
    opts: &TcpOptions,
    spec: &FilterSpec,
) -> Result<(Hook, Tcp, TcpFilter, Vec<Link>)> {
    load_first(&HOOKS, opts, spec)
}

/// The tracer's events, decoded.
pub fn events(tcp: &Tcp) -> Result<EventStream<TcpEvent>> {
    EventStream::new(&tcp.maps.events, event::decode).context("reading tcp events")
}

pub fn losses(tcp: &Tcp) -> Result<Losses> {
    Losses::read(&tcp.maps.losses)
}

/// The tcp tracer as the dashboard and the exporter hold it.
pub struct TcpTracer {
    tcp: Tcp,
    hook: Hook,
    filter: TcpFilter,
    events: EventStream<TcpEvent>,
    links: Vec<Link>,
}

impl TcpTracer {
    pub fn load(f: &LiveFilter) -> Result<Box<dyn Tracer>> {
        let spec = FilterSpec {
            pid: f.pid,
            ports: f.port.into_iter().collect(),
            ..Default::default()
        };
        let (hook, tcp, filter, links) = load_best(&TcpOptions::default(), &spec)?;
        let events = events(&tcp)?;
        Ok(Box::new(TcpTracer {
            tcp,
            hook,
            filter,
            events,
            links,
        }))
    }
}

impl Tracer for TcpTracer {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn hook(&self) -> String {
        self.hook.to_string()
    }

    fn attached(&self) -> bool {
        !self.links.is_empty()
    }

    fn attach(&mut self) -> Result<()> {
        if self.links.is_empty() {
            self.links = attach(&self.tcp)?;
        }
        Ok(())
    }

    fn detach(&mut self) {
        self.links.clear();
    }

    fn set_filter(&mut self, f: &LiveFilter) -> Result<()> {
        self.filter.set_pid(f.pid)?;
        self.filter
            .set_ports(&f.port.into_iter().collect::<Vec<_>>())
    }

    fn losses(&self) -> Result<Losses> {
        losses(&self.tcp)
    }

    fn programs(&self) -> Vec<BorrowedFd<'_>> {
        attach::loaded_programs(self.tcp.object())
    }

    fn sample(&mut self) -> Result<Sample> {
        Ok(Sample::Tcp(self.events.poll(std::time::Duration::ZERO)?))
    }

    fn events(&mut self) -> Result<Option<Sample>> {
        self.sample().map(Some)
    }
}

/// Whether the tracer works here, by loading and attaching it for real (btrace doctor).
pub fn check() -> Result<String> {
    let (hook, ..) = load_best(&TcpOptions::default(), &FilterSpec::default())?;
    Ok(format!("via {hook}"))
}
