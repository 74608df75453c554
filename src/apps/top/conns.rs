// SPDX-License-Identifier: Apache-2.0
//! The TCP panel's table: connections open now and recently closed, built from the tcp
//! tracer's state transitions. Only what was seen since the dashboard started (or since
//! the tcp group was last switched on) is known: a connection older than that appears at
//! its first transition.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::model::tcp::TcpState;
use crate::tracers::tcp::event::{endpoint, TcpEvent};
/// Bounds of the tables: the oldest entry goes first when full.
const MAX_OPEN: usize = 4096;
const KEEP_CLOSED: usize = 64;

type Key = (IpAddr, u16, IpAddr, u16);

#[derive(Clone, Debug)]
pub struct OpenConn {
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub local: String,
    pub remote: String,
    pub state: TcpState,
    /// CLOCK_MONOTONIC ns of the first transition seen.
    pub first_seen_ns: u64,
}

#[derive(Clone, Debug)]
pub struct ClosedConn {
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub local: String,
    pub remote: String,
    /// Since ESTABLISHED, as the kernel measured it; None when that was not seen.
    pub duration_ns: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub rx_bytes: u64,
    pub closed_ns: u64,
}

/// What happened in one interval.
#[derive(Default)]
pub struct TcpInterval {
    pub transitions: u64,
    /// Connections seen for the first time.
    pub opened: u64,
    pub closed: Vec<ClosedConn>,
}

#[derive(Default)]
pub struct Conns {
    open: HashMap<Key, OpenConn>,
    recently_closed: VecDeque<ClosedConn>,
    interval: TcpInterval,
}

impl Conns {
    pub fn add(&mut self, ev: &TcpEvent) {
        self.interval.transitions += 1;
        // A listener is not a connection.
        if ev.newstate == TcpState::LISTEN || ev.oldstate == TcpState::LISTEN {
            return;
        }
        let key = (ev.saddr, ev.sport, ev.daddr, ev.dport);
        // A connecting socket's own port is known only from its next transition on:
        // the entry made at SYN_SENT (port 0) becomes this one.
        if ev.oldstate == TcpState::SYN_SENT && ev.sport != 0 && !self.open.contains_key(&key) {
            if let Some(mut c) = self.open.remove(&(ev.saddr, 0, ev.daddr, ev.dport)) {
                c.local = endpoint(ev.saddr, ev.sport);
                self.open.insert(key, c);
            }
        }
        if ev.newstate == TcpState::CLOSE {
            // Reported only if it was established (not, e.g., a refused connect).
            let seen = self.open.remove(&key);
            if let (true, Some(end)) = (ev.ends_connection(), &ev.end) {
                let seen_owner = seen
                    .as_ref()
                    .and_then(|c| c.pid.map(|p| (p, c.comm.clone())));
                let (pid, comm) = match (ev.pid, seen_owner) {
                    (Some(p), _) => (Some(p), ev.comm.clone()),
                    (None, Some((p, c))) => (Some(p), c),
                    (None, None) => (None, None),
                };
                let closed = ClosedConn {
                    pid,
                    comm,
                    local: endpoint(ev.saddr, ev.sport),
                    remote: endpoint(ev.daddr, ev.dport),
                    duration_ns: end.duration_ns,
                    tx_bytes: end.tx_bytes,
                    rx_bytes: end.rx_bytes,
                    closed_ns: ev.ts_ns,
                };
                if self.recently_closed.len() == KEEP_CLOSED {
                    self.recently_closed.pop_back();
                }
                self.recently_closed.push_front(closed.clone());
                self.interval.closed.push(closed);
            }
            return;
        }
        if !self.open.contains_key(&key) {
            if self.open.len() >= MAX_OPEN {
                self.evict_oldest();
            }
            self.interval.opened += 1;
        }
        let c = self.open.entry(key).or_insert_with(|| OpenConn {
            pid: None,
            comm: None,
            local: endpoint(ev.saddr, ev.sport),
            remote: endpoint(ev.daddr, ev.dport),
            state: ev.newstate,
            first_seen_ns: ev.ts_ns,
        });
        c.state = ev.newstate;
        if ev.pid.is_some() {
            c.pid = ev.pid;
            c.comm = ev.comm.clone();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(k) = self
            .open
            .iter()
            .min_by_key(|(_, c)| c.first_seen_ns)
            .map(|(k, _)| *k)
        {
            self.open.remove(&k);
        }
    }

    /// The tracer was off for a while: transitions were missed, so what looked open
    /// may have closed.
    pub fn forget_open(&mut self) {
        self.open.clear();
    }

    pub fn take_interval(&mut self) -> TcpInterval {
        std::mem::take(&mut self.interval)
    }

    /// Open connections, established ones first, then oldest first.
    pub fn open(&self) -> Vec<OpenConn> {
        let mut v: Vec<OpenConn> = self.open.values().cloned().collect();
        v.sort_by_key(|c| (c.state != TcpState::ESTABLISHED, c.first_seen_ns));
        v
    }

    /// The last closed connections, newest first.
    pub fn recently_closed(&self) -> Vec<ClosedConn> {
        self.recently_closed.iter().cloned().collect()
    }
}
