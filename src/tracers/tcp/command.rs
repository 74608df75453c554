// SPDX-License-Identifier: Apache-2.0
//! `btrace tcp`: TCP connection lifecycle from the `sock:inet_sock_set_state`
//! tracepoint: every state transition, or one line per finished connection (`--life`).

use anyhow::{bail, Result};
use clap::Args;
use libbpf_rs::skel::Skel;
use serde_json::json;

use crate::core::output::OutputArgs;
use crate::core::run::{self, Checked, Events};
use crate::core::scope::{Scope, ScopeArgs};
use crate::core::session::TraceArgs;
use crate::core::stream::RingArgs;
use crate::model::cidr::Cidr;
use crate::model::tcp::Family;

use super::event;
use super::filter::FilterSpec;
use super::tracer::{self, Hook, TcpOptions, DEFAULT_MAX_CONNS};

#[derive(Args, Debug, Clone)]
pub struct TcpArgs {
    #[command(flatten)]
    pub common: TraceArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    #[command(flatten)]
    pub ring: RingArgs,
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
    /// Bound of the per-socket store (sockets open at once); setting it selects the bounded
    /// store instead of socket storage. Sockets born while it is full are reported without
    /// owner or times, and counted
    #[arg(long, value_name = "N", value_parser = tracer::parse_max_conns)]
    pub max_conns: Option<u32>,
    /// Use only this hook, no fallback (default: tp_btf, else the classic tracepoint)
    #[arg(long, value_enum)]
    pub hook: Option<Hook>,
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

fn what_is_traced(spec: &FilterSpec, life: bool, scope: &Scope) -> String {
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
    if let Some(pid) = scope.tree {
        what += &format!(" of process {pid} and the processes it starts");
    } else if scope.tgid != 0 {
        what += &format!(" of process {}", scope.tgid);
    }
    what
}

pub fn run(args: TcpArgs, sink: &OutputArgs) -> Result<i32> {
    // Bad filters are reported before anything is checked or loaded.
    let spec = filter_from_args(&args, None)?;
    if let Some(b) = args.ring.buffer_size {
        let record = std::mem::size_of::<super::skel::types::tcp_event>();
        crate::core::stream::check_ring_fits(b, record)?;
    }
    let session = Checked::system()?.start(&args.common, sink, None)?;
    // The scope applies to each socket's owner (the process that connects, listens,
    // accepts or closes it).
    let scope = Scope::new(session.tgid(), &args.scope)?;
    let opts = TcpOptions {
        life_only: args.life,
        max_conns: args.max_conns.unwrap_or(DEFAULT_MAX_CONNS),
        ring_bytes: args.ring.buffer_size,
        ..Default::default()
    };
    let ways = tracer::ways(args.max_conns.is_some(), args.hook);
    let (way, tcp, _filter, _links) = tracer::load_first(&ways, &opts, &spec, &scope)?;
    let mut stream = tracer::events(&tcp)?;
    let start_ns = crate::core::system::monotonic_ns();
    let (what, header, counted) = if args.life {
        ("TCP connections", event::LIFE_HEADER, "connections")
    } else {
        ("TCP state changes", event::TRANSITION_HEADER, "transitions")
    };
    let hook = way.hook.to_string();
    let events = Events {
        tracing: &what_is_traced(&spec, args.life, &scope),
        counted,
        ..Events::new(what, &hook, header, &tcp.maps.losses, tcp.object())
    };
    let mut ended = run::stream(session, events, &mut stream, |out, e| {
        if args.life && !e.ends_connection() {
            return Ok(false);
        }
        match (out.json, args.life) {
            (true, life) => {
                e.write_json(life, out.buf());
                out.end_line()?
            }
            (false, true) => out.line(&event::life_line(&e))?,
            (false, false) => {
                let secs = e.ts_ns.saturating_sub(start_ns) as f64 / 1e9;
                out.line(&event::transition_line(&e, secs))?
            }
        }
        Ok(true)
    })?;
    let counts = tracer::counts(&tcp)?;
    if !ended.out().json && (counts.untracked_sockets > 0 || counts.unattributed > 0) {
        ended.out().line(&format!(
            "{} sockets untracked (store full: shown without owner or times); {} transitions of sockets with no known owner left out by the pid filter.",
            counts.untracked_sockets, counts.unattributed
        ))?;
    }
    ended.close(json!({
        "store": way.store.to_string(),
        "untracked_sockets": counts.untracked_sockets,
        "unattributed": counts.unattributed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(ports: &[&str], addrs: &[&str], v4: bool, v6: bool) -> TcpArgs {
        TcpArgs {
            common: TraceArgs::default(),
            scope: ScopeArgs::default(),
            ring: RingArgs::default(),
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
            what_is_traced(&s, false, &Scope::default()),
            "IPv6 TCP state changes on port 443 with an address in fd00::/8"
        );
    }
}
