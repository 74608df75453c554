//! `btrace tcp`: TCP connection lifecycle from the `sock:inet_sock_set_state`
//! tracepoint — every state transition, or one line per finished connection (`--life`).
//!
//! Other tools (the dashboard) load the tracer with [`load_best`], steer it with
//! [`TcpFilter`](crate::tcp_filter::TcpFilter) and read it with [`events`].

use std::fmt;

use anyhow::{bail, Context, Result};
use clap::Args;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use serde_json::json;

use crate::attach;
use crate::cidr::Cidr;
use crate::events::{pump, EventStream};
use crate::output::Output;
use crate::session::{Session, TraceArgs};
use crate::tcp_event::{self, TcpEvent};
use crate::tcp_filter::{Family, FilterSpec, TcpFilter};

/// The generated skeleton: `TcpSkel<'static>` is what [`load_best`] returns.
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/tcp.skel.rs"));
}
pub use skel::TcpSkel;
use skel::TcpSkelBuilder;

/// Default bound of the per-socket store: sockets alive (between their first seen
/// transition and CLOSE) at once.
pub const DEFAULT_MAX_CONNS: u32 = 16384;

#[derive(Args, Debug, Clone)]
pub struct TcpArgs {
    #[command(flatten)]
    pub common: TraceArgs,
    /// Only connections with this port at either end (repeatable)
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<String>,
    /// Only connections with an address in this range at either end, e.g. 10.0.0.0/8
    /// or fd00::/64 (repeatable)
    #[arg(long = "addr", value_name = "CIDR")]
    pub addrs: Vec<String>,
    /// Only IPv4 sockets
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Only IPv6 sockets
    #[arg(short = '6')]
    pub ipv6: bool,
    /// One line per finished connection: owner, endpoints, bytes each way, duration
    #[arg(long)]
    pub life: bool,
    /// Bound of the per-socket store (sockets open at once); beyond it sockets are
    /// reported without owner or times, and counted
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns: Option<u32>,
    /// Use this hook only, no fallback (tests of each hook across kernels)
    #[arg(long, value_enum, hide = true)]
    pub hook: Option<Hook>,
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

/// Opens and loads the programs of one hook, sets the filter, then attaches: the first
/// transition the tracer sees is already filtered.
pub fn load(
    hook: Hook,
    opts: &TcpOptions,
    spec: &FilterSpec,
) -> Result<(TcpSkel<'static>, TcpFilter)> {
    let mut open = TcpSkelBuilder::default().open(attach::skel_storage())?;
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
    if hook == Hook::Tracepoint {
        crate::system::ensure_tracefs()?;
    }
    let mut skel = open.load()?;
    let mut filter = TcpFilter::new(&skel)?;
    filter.apply(spec)?;
    skel.attach()?;
    Ok((skel, filter))
}

/// Loads the cheapest hook this kernel accepts, with `spec` as the initial filter.
pub fn load_best(
    opts: &TcpOptions,
    spec: &FilterSpec,
) -> Result<(Hook, TcpSkel<'static>, TcpFilter)> {
    let (hook, (skel, filter)) = attach::first_that_works(&HOOKS, |h| load(h, opts, spec))?;
    Ok((hook, skel, filter))
}

/// The tracer's events, decoded.
pub fn events<'a>(skel: &'a TcpSkel<'_>) -> Result<EventStream<'a, TcpEvent>> {
    EventStream::new(&skel.maps.events, tcp_event::decode)
}

/// The command line's filter, checked: one clear message for anything wrong.
pub fn filter_from_args(args: &TcpArgs, pid: Option<u32>) -> Result<FilterSpec> {
    let mut ports = Vec::new();
    for p in &args.ports {
        match p.trim().parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => ports.push(n as u16),
            _ => bail!("--port {p}: a port is a number from 1 to 65535"),
        }
    }
    let addrs = args
        .addrs
        .iter()
        .map(|a| {
            a.trim()
                .parse::<Cidr>()
                .map_err(|e| anyhow::anyhow!("--addr {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let family = match (args.ipv4, args.ipv6) {
        (true, _) => Some(Family::V4),
        (_, true) => Some(Family::V6),
        _ => None,
    };
    let spec = FilterSpec {
        pid,
        ports,
        addrs,
        family,
    };
    spec.check()?;
    Ok(spec)
}

fn what_is_traced(spec: &FilterSpec, life: bool) -> String {
    let mut what = if life {
        "TCP connections"
    } else {
        "TCP state changes"
    }
    .to_string();
    if let Some(f) = spec.family {
        what = format!("{f} {what}");
    }
    if !spec.ports.is_empty() {
        let p: Vec<String> = spec.ports.iter().map(u16::to_string).collect();
        what += &format!(" on port {}", p.join(","));
    }
    if !spec.addrs.is_empty() {
        let a: Vec<String> = spec.addrs.iter().map(Cidr::to_string).collect();
        what += &format!(" with an address in {}", a.join(","));
    }
    if let Some(pid) = spec.pid {
        what += &format!(" of pid {pid}");
    }
    what
}

pub fn run(args: TcpArgs) -> Result<()> {
    let c = &args.common;
    if c.interval.is_some() {
        bail!("btrace tcp prints events as they happen; --interval does not apply to it");
    }
    // Bad filters are reported before anything is checked or loaded.
    filter_from_args(&args, None)?;
    crate::system::preflight()?;
    let mut session = Session::new(c)?;
    let spec = filter_from_args(&args, session.tgid())?;
    let opts = TcpOptions {
        life_only: args.life,
        max_conns: args.max_conns.unwrap_or(DEFAULT_MAX_CONNS),
    };
    let hooks = args.hook.map_or(HOOKS.to_vec(), |h| vec![h]);
    let (hook, (skel, _filter)) = attach::first_that_works(&hooks, |h| load(h, &opts, &spec))?;
    let stream = events(&skel).context("reading tcp events")?;
    let mut out = Output::new(c.json);
    if !out.json {
        out.line(if args.life {
            tcp_event::LIFE_HEADER
        } else {
            tcp_event::TRANSITION_HEADER
        })?;
        out.flush()?;
    }
    let start_ns = crate::system::monotonic_ns();
    session.attached(&what_is_traced(&spec, args.life))?;
    let (end, shown, lost) = pump(
        &mut session,
        &stream,
        &mut out,
        &skel.maps.losses,
        |out, e| {
            if args.life && !e.ends_connection() {
                return Ok(false);
            }
            match (out.json, args.life) {
                (true, true) => out.record(&e.to_life_json())?,
                (true, false) => out.record(&e.to_json())?,
                (false, true) => out.line(&tcp_event::life_line(&e))?,
                (false, false) => {
                    let secs = e.ts_ns.saturating_sub(start_ns) as f64 / 1e9;
                    out.line(&tcp_event::transition_line(&e, secs))?
                }
            }
            Ok(true)
        },
    )?;
    let secs = session.elapsed().as_secs_f64();
    let kind = if args.life {
        "connections"
    } else {
        "transitions"
    };
    if out.json {
        out.record(&session.summary(
            end,
            json!({
                "hook": hook.to_string(), kind: shown,
                "dropped": {"ringbuf": lost.ringbuf, "map_full": lost.map_full},
            }),
        ))?;
    } else {
        out.line(&format!(
            "Traced {secs:.1} s via {hook}: {shown} {kind}. Dropped: {} events (ring buffer full); {} sockets untracked (store full: shown without owner or times).",
            lost.ringbuf, lost.map_full
        ))?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(ports: &[&str], addrs: &[&str], v4: bool, v6: bool) -> TcpArgs {
        TcpArgs {
            common: TraceArgs::default(),
            ports: ports.iter().map(|s| s.to_string()).collect(),
            addrs: addrs.iter().map(|s| s.to_string()).collect(),
            ipv4: v4,
            ipv6: v6,
            life: false,
            max_conns: None,
            hook: None,
        }
    }

    #[test]
    fn command_line_filters() {
        let s = filter_from_args(
            &args(&["80", "8080"], &["10.0.0.0/8"], true, false),
            Some(7),
        )
        .unwrap();
        assert_eq!(s.ports, vec![80, 8080]);
        assert_eq!(s.addrs[0].to_string(), "10.0.0.0/8");
        assert_eq!(s.family, Some(Family::V4));
        assert_eq!(s.pid, Some(7));
        for bad in ["0", "65536", "-1", "http", ""] {
            let e = filter_from_args(&args(&[bad], &[], false, false), None).unwrap_err();
            assert!(e.to_string().contains("1 to 65535"), "{bad}: {e}");
        }
        let e = filter_from_args(&args(&[], &["10.0.0.0/33"], false, false), None).unwrap_err();
        assert!(e.to_string().starts_with("--addr '10.0.0.0/33'"), "{e}");
        let e = filter_from_args(&args(&[], &["::1"], true, false), None).unwrap_err();
        assert!(e.to_string().contains("IPv6 range"), "{e}");
    }

    #[test]
    fn the_tracing_line_says_what_is_filtered() {
        let s = filter_from_args(&args(&["443"], &["fd00::/8"], false, true), None).unwrap();
        assert_eq!(
            what_is_traced(&s, false),
            "IPv6 TCP state changes on port 443 with an address in fd00::/8"
        );
    }
}
