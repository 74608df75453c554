//! The dashboard's probe groups: the tracers it loads once, owns for its whole life, and
//! switches off and on by dropping and re-creating their links (the programs really stop
//! running; they stay loaded, so a toggle costs no reload and leaks nothing).

use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};
use libbpf_rs::skel::Skel;
use libbpf_rs::{Link, MapHandle, Object};

use crate::attach;
use crate::events::EventStream;
use crate::hist::{self, HistSkel};
use crate::percpu::Losses;
use crate::sched::{self, SchedSkel};
use crate::tcp::{self, TcpOptions, TcpSkel};
use crate::tcp_event::{self, TcpEvent};
use crate::tcp_filter::{FilterSpec, TcpFilter};

use super::conns::Conns;
use super::stats::{self, ProgRunTime};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupId {
    Syscalls,
    Tcp,
    Sched,
}

impl GroupId {
    pub const ALL: [GroupId; 3] = [GroupId::Syscalls, GroupId::Tcp, GroupId::Sched];

    pub fn name(self) -> &'static str {
        match self {
            GroupId::Syscalls => "syscalls",
            GroupId::Tcp => "tcp",
            GroupId::Sched => "sched",
        }
    }

    /// The key that toggles the group.
    pub fn key(self) -> char {
        match self {
            GroupId::Syscalls => '1',
            GroupId::Tcp => '2',
            GroupId::Sched => '3',
        }
    }

    pub fn from_key(c: char) -> Option<GroupId> {
        GroupId::ALL.into_iter().find(|g| g.key() == c)
    }
}

/// A group's state as the dashboard shows it.
pub struct Group {
    pub id: GroupId,
    /// The hook chosen at run time, e.g. "tp_btf+task_storage".
    pub hook: String,
    /// Why the group could not be loaded, if it could not.
    pub unavailable: Option<String>,
    links: Vec<Link>,
    attached: bool,
}

impl Group {
    pub fn attached(&self) -> bool {
        self.attached
    }

    pub fn links(&self) -> usize {
        self.links.len()
    }
}

/// The tcp tracer with its run-time filter, its event stream and what the events built.
pub struct TcpSource {
    pub skel: TcpSkel<'static>,
    filter: TcpFilter,
    events: EventStream<'static, TcpEvent>,
    pub conns: Conns,
}

impl TcpSource {
    /// Loads the tracer (attached, filtered from its first event on) and takes its link
    /// into `links`, so that it is detached and re-attached like every other group's.
    fn load(spec: &FilterSpec) -> Result<(String, TcpSource, Vec<Link>)> {
        let (hook, mut skel, filter) = tcp::load_best(&TcpOptions::default(), spec)?;
        let links = std::mem::take(&mut skel.links);
        let links: Vec<Link> = [links.tcp_state_btf, links.tcp_state_tp]
            .into_iter()
            .flatten()
            .collect();
        // The stream reads the ring buffer through its own handle of the map, not a
        // borrow of the skeleton (which this struct owns): one handle, kept until exit.
        let ring: &'static MapHandle = Box::leak(Box::new(
            MapHandle::try_from(&skel.maps.events).context("the tcp ring buffer")?,
        ));
        let events = EventStream::new(ring, tcp_event::decode)?;
        let src = TcpSource {
            skel,
            filter,
            events,
            conns: Conns::default(),
        };
        Ok((hook.to_string(), src, links))
    }
}

pub struct Sources {
    pub hist: HistSkel<'static>,
    pub tcp: Option<TcpSource>,
    pub sched: Option<SchedSkel<'static>>,
    pub groups: Vec<Group>,
    pid_filter: Option<u32>,
    port_filter: Option<u16>,
}

/// A group that loaded, or the reason it did not.
fn group(id: GroupId, loaded: Result<(String, Vec<Link>)>) -> Group {
    match loaded {
        Ok((hook, links)) => Group {
            id,
            hook,
            unavailable: None,
            links,
            attached: true,
        },
        Err(e) => Group {
            id,
            hook: String::new(),
            unavailable: Some(format!("{e:#}")),
            links: Vec::new(),
            attached: false,
        },
    }
}

impl Sources {
    /// Loads and attaches every group. The syscall group must load; the others are
    /// shown as unavailable (with the reason) when this kernel refuses them.
    pub fn load(pid_filter: Option<u32>, port_filter: Option<u16>) -> Result<Sources> {
        let filter = hist::Filter {
            count_processes: true,
            ..Default::default()
        };
        let (way, (hist, hist_links)) = attach::first_that_works(&hist::ways(false), |way| {
            let mut skel = hist::open_load(way, &filter)?;
            // Filtered from the first event on: set before attaching.
            hist::set_live_tgid(&mut skel, pid_filter.unwrap_or(0));
            let links = attach::attach_loaded(skel.object())?;
            Ok((skel, links))
        })?;
        let mut groups = vec![Group {
            id: GroupId::Syscalls,
            hook: way.to_string(),
            unavailable: None,
            links: hist_links,
            attached: true,
        }];
        let spec = FilterSpec {
            pid: pid_filter,
            ports: port_filter.into_iter().collect(),
            ..Default::default()
        };
        let (tcp, loaded) = match TcpSource::load(&spec) {
            Ok((hook, src, links)) => (Some(src), Ok((hook, links))),
            Err(e) => (None, Err(e)),
        };
        groups.push(group(GroupId::Tcp, loaded));
        let (sched, loaded) = match attach::first_that_works(&sched::WAYS, |way| {
            let mut skel = sched::open_load(way)?;
            sched::set_live_tgid(&mut skel, pid_filter.unwrap_or(0));
            let links = attach::attach_loaded(skel.object())?;
            Ok((skel, links))
        }) {
            Ok((way, (skel, links))) => (Some(skel), Ok((way.to_string(), links))),
            Err(e) => (None, Err(e)),
        };
        groups.push(group(GroupId::Sched, loaded));
        Ok(Sources {
            hist,
            tcp,
            sched,
            groups,
            pid_filter,
            port_filter,
        })
    }

    fn object(&self, id: GroupId) -> Option<&Object> {
        match id {
            GroupId::Syscalls => Some(self.hist.object()),
            GroupId::Tcp => self.tcp.as_ref().map(|t| t.skel.object()),
            GroupId::Sched => self.sched.as_ref().map(|s| s.object()),
        }
    }

    pub fn group(&self, id: GroupId) -> &Group {
        self.groups
            .iter()
            .find(|g| g.id == id)
            .expect("every group")
    }

    fn group_mut(&mut self, id: GroupId) -> &mut Group {
        self.groups
            .iter_mut()
            .find(|g| g.id == id)
            .expect("every group")
    }

    /// Detaches an attached group, re-attaches a detached one. Entries its programs
    /// stored before the detach are marked stale first, so no wait or latency spans the
    /// time the group was off.
    pub fn toggle(&mut self, id: GroupId) -> Result<()> {
        if self.group(id).unavailable.is_some() {
            return Ok(());
        }
        if self.group(id).attached {
            let g = self.group_mut(id);
            g.links.clear();
            g.attached = false;
            return Ok(());
        }
        let now = crate::system::monotonic_ns();
        match id {
            GroupId::Syscalls => {
                hist::set_epoch(&mut self.hist, now);
                hist::clear_thread_store(&self.hist);
            }
            GroupId::Tcp => {
                if let Some(t) = self.tcp.as_mut() {
                    t.conns.forget_open();
                }
            }
            GroupId::Sched => {
                if let Some(s) = self.sched.as_mut() {
                    sched::set_epoch(s, now);
                }
            }
        }
        let links = match self.object(id) {
            Some(obj) => attach::attach_loaded(obj)?,
            None => Vec::new(),
        };
        let g = self.group_mut(id);
        g.links = links;
        g.attached = true;
        Ok(())
    }

    pub fn pid_filter(&self) -> Option<u32> {
        self.pid_filter
    }

    /// Sets (Some) or clears (None) the process filter of every group, in their maps.
    pub fn set_pid_filter(&mut self, pid: Option<u32>) -> Result<()> {
        let tgid = pid.unwrap_or(0);
        hist::set_live_tgid(&mut self.hist, tgid);
        if let Some(s) = self.sched.as_mut() {
            sched::set_live_tgid(s, tgid);
        }
        if let Some(t) = self.tcp.as_mut() {
            t.filter.set_pid(pid)?;
        }
        self.pid_filter = pid;
        Ok(())
    }

    pub fn port_filter(&self) -> Option<u16> {
        self.port_filter
    }

    /// Sets (Some) or clears (None) the TCP port filter (either end of a connection).
    pub fn set_port_filter(&mut self, port: Option<u16>) -> Result<()> {
        if let Some(t) = self.tcp.as_mut() {
            t.filter.set_ports(&port.into_iter().collect::<Vec<_>>())?;
        }
        self.port_filter = port;
        Ok(())
    }

    /// Takes what the tcp tracer sent since the last call into its table.
    pub fn drain_tcp(&mut self) -> Result<()> {
        if let Some(t) = self.tcp.as_mut() {
            for ev in t.events.poll(Duration::ZERO)? {
                t.conns.add(&ev);
            }
        }
        Ok(())
    }

    /// The group's programs' run-time counters, summed (zero for an unloaded group).
    pub fn run_time(&self, id: GroupId) -> Result<ProgRunTime> {
        let mut sum = ProgRunTime::default();
        if let Some(obj) = self.object(id) {
            for p in obj.progs().filter(|p| p.autoload()) {
                sum.add(&stats::prog_run_time(p.as_fd())?);
            }
        }
        Ok(sum)
    }

    /// Number of programs the group has loaded.
    pub fn programs(&self, id: GroupId) -> usize {
        self.object(id)
            .map(|o| o.progs().filter(|p| p.autoload()).count())
            .unwrap_or(0)
    }

    /// The group's kernel-counted drops (full maps, ring buffer).
    pub fn losses(&self, id: GroupId) -> Result<Losses> {
        Ok(match id {
            GroupId::Syscalls => Losses::read(&self.hist.maps.losses)?,
            GroupId::Tcp => match &self.tcp {
                Some(t) => Losses::read(&t.skel.maps.losses)?,
                None => Losses::default(),
            },
            GroupId::Sched => match &self.sched {
                Some(s) => Losses::read(&s.maps.losses)?,
                None => Losses::default(),
            },
        })
    }
}
