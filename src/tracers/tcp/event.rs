// SPDX-License-Identifier: Apache-2.0
//! One TCP state transition as user space sees it: decoded from the kernel's record,
//! with payload byte counts, as JSON and as text.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[cfg(test)]
use serde_json::{json, Value};

use crate::model::json_write as jw;
use crate::model::task::comm_text;
use crate::model::tcp::{Family, TcpState};

use super::skel::types::{self, tcp_event_flag as F};

/// Flags of struct tcp_event (enum tcp_event_flag in tcp.h).
const EV_OWNER: u8 = F::TCP_EV_OWNER.0 as u8;
const EV_COUNTERS: u8 = F::TCP_EV_COUNTERS.0 as u8;
const EV_SYN_ACKED: u8 = F::TCP_EV_SYN_ACKED.0 as u8;
const EV_FIN_ACKED: u8 = F::TCP_EV_FIN_ACKED.0 as u8;
const EV_FIN_RECV: u8 = F::TCP_EV_FIN_RECV.0 as u8;
const EV_BIRTH: u8 = F::TCP_EV_BIRTH.0 as u8;

/// What the closing transition adds.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnEnd {
    /// Since ESTABLISHED; None when that was not seen (connected before tracing began,
    /// never connected, or the per-socket store was full).
    pub duration_ns: Option<u64>,
    /// Payload bytes the peer acknowledged; None when the socket's first transition was not
    /// seen (whether this end sent the SYN, which the counter includes, is then unknown).
    pub tx_bytes: Option<u64>,
    /// Payload bytes this end received.
    pub rx_bytes: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TcpEvent {
    /// CLOCK_MONOTONIC nanoseconds of the transition.
    pub ts_ns: u64,
    /// The socket's owner (the process that connected, listened or closed it); None
    /// while no transition of the socket has been seen in its owner's context. When
    /// btrace runs in a pid namespace of its own: the owner's pid there (None for an owner
    /// outside it), with the host's in `host_pid`.
    pub pid: Option<u32>,
    pub host_pid: Option<u32>,
    pub comm: Option<String>,
    /// The owner's cgroup v2 id when the owner was learned.
    pub cgroup_id: Option<u64>,
    pub family: Family,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub oldstate: TcpState,
    pub newstate: TcpState,
    /// None when the old state's start was not seen.
    pub ns_in_old_state: Option<u64>,
    /// Present on the transition into CLOSE.
    pub end: Option<ConnEnd>,
}

/// Payload bytes from tcp_sock's counters, which count sequence space: the SYN this end
/// sent and both FINs each take one number when acknowledged or received.
pub fn payload_bytes(bytes_acked: u64, bytes_received: u64, flags: u8) -> (u64, u64) {
    let tx_control = u64::from(flags & EV_SYN_ACKED != 0) + u64::from(flags & EV_FIN_ACKED != 0);
    let rx_control = u64::from(flags & EV_FIN_RECV != 0);
    (
        bytes_acked.saturating_sub(tx_control),
        bytes_received.saturating_sub(rx_control),
    )
}

fn addr(family: Family, raw: &[u8; 16]) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(*raw)),
    }
}

fn since(now: u64, then: u64) -> Option<u64> {
    (then != 0 && now >= then).then(|| now - then)
}

/// Decodes one ring-buffer record (None if it is not a tcp_event).
pub fn decode(data: &[u8]) -> Option<TcpEvent> {
    let ev = plain::from_bytes::<types::tcp_event>(data).ok()?;
    let family = Family::from_af(ev.family)?;
    let owner = ev.flags & EV_OWNER != 0;
    let comm = owner.then(|| comm_text(&ev.comm));
    let end = (ev.flags & EV_COUNTERS != 0).then(|| {
        let (tx_bytes, rx_bytes) = payload_bytes(ev.bytes_acked, ev.bytes_received, ev.flags);
        ConnEnd {
            duration_ns: since(ev.ts_ns, ev.established_ns),
            tx_bytes: (ev.flags & EV_BIRTH != 0).then_some(tx_bytes),
            rx_bytes,
        }
    });
    Some(TcpEvent {
        ts_ns: ev.ts_ns,
        pid: match (owner, crate::core::pidns::in_child_ns()) {
            (true, true) => (ev.ns_pid != 0).then_some(ev.ns_pid),
            (true, false) => Some(ev.pid),
            (false, _) => None,
        },
        host_pid: (owner && crate::core::pidns::in_child_ns()).then_some(ev.pid),
        comm,
        cgroup_id: owner.then_some(ev.cgroup_id),
        family,
        saddr: addr(family, &ev.saddr),
        sport: ev.sport,
        daddr: addr(family, &ev.daddr),
        dport: ev.dport,
        oldstate: TcpState(ev.oldstate),
        newstate: TcpState(ev.newstate),
        ns_in_old_state: since(ev.ts_ns, ev.old_since_ns),
        end,
    })
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl TcpEvent {
    /// The transition ends a connection that was established (what `--life` reports).
    pub fn ends_connection(&self) -> bool {
        self.newstate == TcpState::CLOSE && self.end.is_some() && self.oldstate.after_established()
    }

    #[cfg(test)]
    fn endpoint_fields(&self, kind: &str) -> serde_json::Map<String, Value> {
        let mut v = json!({
            "type": kind, "ts_ns": self.ts_ns, "pid": self.pid, "comm": self.comm,
            "family": self.family.number(),
            "saddr": self.saddr.to_string(), "sport": self.sport,
            "daddr": self.daddr.to_string(), "dport": self.dport,
        });
        if let Some(h) = self.host_pid {
            v["host_pid"] = h.into();
        }
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    /// `{"type":"tcp", ...}`: one state transition. The reference
    /// [`write_json`](Self::write_json) is held to.
    #[cfg(test)]
    pub fn to_json(&self) -> Value {
        let mut m = self.endpoint_fields("tcp");
        m.insert("oldstate".into(), self.oldstate.name().into());
        m.insert("newstate".into(), self.newstate.name().into());
        m.insert(
            "ms_in_old_state".into(),
            json!(self.ns_in_old_state.map(ms)),
        );
        if let Some(end) = &self.end {
            m.insert("duration_ms".into(), json!(end.duration_ns.map(ms)));
            m.insert("tx_bytes".into(), json!(end.tx_bytes));
            m.insert("rx_bytes".into(), end.rx_bytes.into());
        }
        Value::Object(m)
    }

    /// `{"type":"tcp_life", ...}`: one finished connection (`--life`).
    #[cfg(test)]
    pub fn to_life_json(&self) -> Value {
        let mut m = self.endpoint_fields("tcp_life");
        if let Some(end) = &self.end {
            m.insert("tx_bytes".into(), json!(end.tx_bytes));
            m.insert("rx_bytes".into(), end.rx_bytes.into());
            m.insert("duration_ms".into(), json!(end.duration_ns.map(ms)));
        }
        Value::Object(m)
    }

    /// `to_json`, or `to_life_json` when `life` (the tests' references),
    /// written straight into `out` (the same bytes) without building a JSON tree.
    pub fn write_json(&self, life: bool, out: &mut Vec<u8>) {
        use std::io::Write;
        out.push(b'{');
        jw::key(out, "type");
        jw::str(out, if life { "tcp_life" } else { "tcp" });
        jw::next_key(out, "ts_ns");
        jw::int(out, self.ts_ns);
        jw::next_key(out, "pid");
        jw::opt_int(out, self.pid);
        jw::next_key(out, "comm");
        jw::opt_str(out, self.comm.as_deref());
        jw::next_key(out, "family");
        jw::int(out, self.family.number());
        // Addresses print as digits, dots, colons and hex: nothing to escape. Writing
        // into a Vec cannot fail.
        jw::next_key(out, "saddr");
        let _ = write!(out, "\"{}\"", self.saddr);
        jw::next_key(out, "sport");
        jw::int(out, self.sport);
        jw::next_key(out, "daddr");
        let _ = write!(out, "\"{}\"", self.daddr);
        jw::next_key(out, "dport");
        jw::int(out, self.dport);
        if let Some(h) = self.host_pid {
            jw::next_key(out, "host_pid");
            jw::int(out, h);
        }
        if life {
            if let Some(end) = &self.end {
                jw::next_key(out, "tx_bytes");
                jw::opt_int(out, end.tx_bytes);
                jw::next_key(out, "rx_bytes");
                jw::int(out, end.rx_bytes);
                jw::next_key(out, "duration_ms");
                jw::opt_f64(out, end.duration_ns.map(ms));
            }
        } else {
            jw::next_key(out, "oldstate");
            jw::str(out, self.oldstate.name());
            jw::next_key(out, "newstate");
            jw::str(out, self.newstate.name());
            jw::next_key(out, "ms_in_old_state");
            jw::opt_f64(out, self.ns_in_old_state.map(ms));
            if let Some(end) = &self.end {
                jw::next_key(out, "duration_ms");
                jw::opt_f64(out, end.duration_ns.map(ms));
                jw::next_key(out, "tx_bytes");
                jw::opt_int(out, end.tx_bytes);
                jw::next_key(out, "rx_bytes");
                jw::int(out, end.rx_bytes);
            }
        }
        out.push(b'}');
    }
}

/// `addr:port`, IPv6 in brackets.
pub fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// A measured number, or `-` when it is not known.
fn opt_text(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |n| n.to_string())
}

fn ms_text(ns: Option<u64>) -> String {
    ns.map_or_else(|| "-".into(), |n| format!("{:.3}", ms(n)))
}

fn owner_text(e: &TcpEvent) -> (String, String) {
    (
        e.pid.map_or_else(|| "-".into(), |p| p.to_string()),
        e.comm.as_deref().map_or_else(
            || "-".into(),
            |c| crate::model::bytes::escape_text(c).into_owned(),
        ),
    )
}

pub const TRANSITION_HEADER: &str = "TIME_S       PID COMM             LOCAL                  REMOTE                 OLD         -> NEW          MS_IN_OLD";

/// One text line per transition; `secs` is the time since tracing began.
pub fn transition_line(e: &TcpEvent, secs: f64) -> String {
    let (pid, comm) = owner_text(e);
    let mut line = format!(
        "{secs:<9.3} {pid:>7} {comm:<16} {:<22} {:<22} {:<11} -> {:<11} {:>10}",
        endpoint(e.saddr, e.sport),
        endpoint(e.daddr, e.dport),
        e.oldstate.name(),
        e.newstate.name(),
        ms_text(e.ns_in_old_state),
    );
    if let Some(end) = &e.end {
        let duration = end
            .duration_ns
            .map_or_else(|| "-".into(), |n| format!("{:.3} ms", ms(n)));
        line.push_str(&format!(
            "  duration {duration}, tx {} B, rx {} B",
            opt_text(end.tx_bytes),
            end.rx_bytes
        ));
    }
    line
}

pub const LIFE_HEADER: &str = "    PID COMM             LOCAL                  REMOTE                   TX_BYTES   RX_BYTES      DUR_MS";

/// One text line per finished connection (`--life`).
pub fn life_line(e: &TcpEvent) -> String {
    let (pid, comm) = owner_text(e);
    let end = e.end.as_ref();
    format!(
        "{pid:>7} {comm:<16} {:<22} {:<22} {:>10} {:>10} {:>11}",
        endpoint(e.saddr, e.sport),
        endpoint(e.daddr, e.dport),
        end.map_or_else(|| "-".into(), |x| opt_text(x.tx_bytes)),
        end.map_or(0, |x| x.rx_bytes),
        ms_text(end.and_then(|x| x.duration_ns)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(family: u16, flags: u8) -> types::tcp_event {
        let mut r = types::tcp_event {
            ts_ns: 5_000_000_000,
            old_since_ns: 4_999_880_000,
            established_ns: 4_700_000_000,
            bytes_acked: 1001,
            bytes_received: 501,
            pid: 42,
            family,
            sport: 50960,
            dport: 8080,
            oldstate: 5,
            newstate: 7,
            flags,
            ..Default::default()
        };
        if family == 2 {
            r.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
            r.daddr[..4].copy_from_slice(&[127, 0, 0, 2]);
        } else {
            r.saddr[15] = 1;
            r.daddr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 2).octets();
        }
        for (d, s) in r.comm.iter_mut().zip(b"curl\0") {
            *d = *s as _;
        }
        r
    }

    fn bytes(r: &types::tcp_event) -> Vec<u8> {
        // SAFETY: a plain struct of integers (Plain in skel.rs).
        unsafe { plain::as_bytes(r) }.to_vec()
    }

    #[test]
    fn control_sequence_numbers_are_not_payload() {
        assert_eq!(payload_bytes(1002, 501, 4 | 8 | 16), (1000, 500));
        assert_eq!(payload_bytes(1000, 500, 0), (1000, 500));
        assert_eq!(payload_bytes(0, 0, 4 | 8 | 16), (0, 0));
    }

    #[test]
    fn decodes_a_closing_ipv4_transition() {
        let e = decode(&bytes(&raw(2, 1 | 2 | 8 | 16 | 32))).unwrap();
        let j = e.to_json();
        assert_eq!(j["type"], "tcp");
        assert_eq!(j["pid"], 42);
        assert_eq!(j["comm"], "curl");
        assert_eq!(j["family"], 4);
        assert_eq!(j["saddr"], "127.0.0.1");
        assert_eq!(j["daddr"], "127.0.0.2");
        assert_eq!(j["sport"], 50960);
        assert_eq!(j["oldstate"], "FIN_WAIT2");
        assert_eq!(j["newstate"], "CLOSE");
        assert_eq!(j["ms_in_old_state"], 0.12);
        assert_eq!(j["duration_ms"], 300.0);
        assert_eq!(j["tx_bytes"], 1000);
        assert_eq!(j["rx_bytes"], 500);
        assert!(e.ends_connection());
        let keys: Vec<_> = j.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "type",
                "ts_ns",
                "pid",
                "comm",
                "family",
                "saddr",
                "sport",
                "daddr",
                "dport",
                "oldstate",
                "newstate",
                "ms_in_old_state",
                "duration_ms",
                "tx_bytes",
                "rx_bytes"
            ]
        );
    }

    /// Whether this end sent a SYN (counted in bytes_acked) is known only when the
    /// socket's first transition was seen: otherwise tx_bytes is unknown, never off by one.
    #[test]
    fn tx_bytes_unknown_without_the_birth() {
        let e = decode(&bytes(&raw(2, 1 | 2 | 8 | 16))).unwrap();
        assert!(e.to_json()["tx_bytes"].is_null());
        assert_eq!(e.to_json()["rx_bytes"], 500);
        assert!(
            life_line(&e).contains("        -        500"),
            "{}",
            life_line(&e)
        );
    }

    #[test]
    fn unknown_owner_and_times_are_null_not_zero() {
        let mut r = raw(10, 0);
        r.old_since_ns = 0;
        r.oldstate = 3;
        r.newstate = 1;
        let e = decode(&bytes(&r)).unwrap();
        let j = e.to_json();
        assert_eq!(j["family"], 6);
        assert_eq!(j["saddr"], "::1");
        assert_eq!(j["daddr"], "fd00:200::2");
        assert!(j["pid"].is_null() && j["comm"].is_null());
        assert!(j["ms_in_old_state"].is_null());
        assert!(
            j.get("duration_ms").is_none(),
            "only the closing event has it"
        );
        assert!(!e.ends_connection());
        let line = transition_line(&e, 1.5);
        assert!(
            line.contains("[::1]:50960") && line.contains("SYN_RECV"),
            "{line}"
        );
    }

    #[test]
    fn written_json_is_the_tree_s_bytes() {
        let closing = decode(&bytes(&raw(2, 1 | 2 | 8 | 16 | 32))).unwrap();
        let no_birth = decode(&bytes(&raw(2, 1 | 2 | 8 | 16))).unwrap();
        let mut r = raw(10, 0);
        r.old_since_ns = 0;
        let no_owner = decode(&bytes(&r)).unwrap();
        let mut r = raw(10, 1 | 2);
        r.established_ns = 0;
        let in_ns = TcpEvent {
            host_pid: Some(4242),
            comm: Some("a\"b\\".into()),
            ..decode(&bytes(&r)).unwrap()
        };
        for e in [closing, no_birth, no_owner, in_ns] {
            for (life, tree) in [(false, e.to_json()), (true, e.to_life_json())] {
                let mut written = Vec::new();
                e.write_json(life, &mut written);
                assert_eq!(
                    String::from_utf8_lossy(&written),
                    serde_json::to_string(&tree).unwrap()
                );
            }
        }
    }

    #[test]
    fn short_or_foreign_records_are_skipped() {
        assert!(decode(&[0u8; 8]).is_none());
        assert!(decode(&bytes(&raw(1, 0))).is_none());
    }
}
