// SPDX-License-Identifier: Apache-2.0
//! `btrace tcp` against the real kernel, with real sockets: loopback connections and
//! connections between test-owned network namespaces, of exactly known duration and size.

mod common;

use std::time::Duration;

use common::agent::AgentHits;
use common::net::{free_port, run_workload, NetnsPair};
use common::*;
use serde_json::Value;

/// The tests of this file run two at a time; the one that counts the store's slots exactly
/// must not share the machine's socket births with the others.
static SOCKETS: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn sockets_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    SOCKETS.read().unwrap_or_else(|e| e.into_inner())
}

fn sockets_alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    SOCKETS.write().unwrap_or_else(|e| e.into_inner())
}

/// The transition records `old -> new`.
fn transitions<'a>(recs: &'a [Value], old: &str, new: &str) -> Vec<&'a Value> {
    of_type(recs, "tcp")
        .into_iter()
        .filter(|r| r["oldstate"] == old && r["newstate"] == new)
        .collect()
}

/// The single record `old -> new` whose local port is `sport`.
fn one<'a>(recs: &'a [Value], old: &str, new: &str, sport: u64) -> &'a Value {
    let v: Vec<_> = transitions(recs, old, new)
        .into_iter()
        .filter(|r| r["sport"] == sport)
        .collect();
    assert_eq!(v.len(), 1, "{old} -> {new} with sport {sport}: {recs:#?}");
    v[0]
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Never shorter than `hold_ms`, and longer only by scheduling slack (generous: a loaded
/// 2-CPU machine can delay the close by a few hundred ms).
fn assert_held(ms: f64, hold_ms: f64) {
    assert!(
        ms >= hold_ms && ms <= hold_ms * 1.1 + 300.0,
        "{ms} ms for a connection held {hold_ms} ms"
    );
}

/// Starts btrace, runs `body` once it is attached, then stops it with SIGTERM and
/// returns its JSON records, checking that its programs are gone.
fn trace_around(args: &[&str], body: impl FnOnce()) -> Vec<Value> {
    let mut r = Running::start(args);
    let ids = r.wait_attached();
    body();
    // Transitions are in the ring buffer when the sockets' calls return; the final
    // drain after SIGTERM collects them.
    std::thread::sleep(Duration::from_millis(200));
    r.signal(libc::SIGTERM);
    let (recs, code, err) = r.finish();
    assert_unloaded(&ids);
    assert_eq!(code, 0, "stderr: {err:?}");
    recs
}

#[test]
fn ipv4_loopback_connection_of_known_length_and_size() {
    let _sockets = sockets_shared();
    let port = free_port();
    let p = port.to_string();
    let cmd = format!(
        "{} --wait tcp-pair 127.0.0.1 {p} 400 1234 56789",
        workload()
    );
    let (recs, code, _) = trace_to_end(&["tcp", "--json", "--port", &p, "-c", &cmd]);
    assert_eq!(code, 0);
    let port = port as u64;

    let est = transitions(&recs, "SYN_SENT", "ESTABLISHED");
    assert_eq!(est.len(), 1, "{recs:#?}");
    let client = est[0];
    let cport = client["sport"].as_u64().unwrap();
    assert!(cport > 0 && cport != port);
    assert_eq!(client["dport"], port);
    assert_eq!(client["family"], 4);
    assert_eq!(client["saddr"], "127.0.0.1");
    assert_eq!(client["daddr"], "127.0.0.1");
    assert_eq!(client["comm"], "workload");
    let pid = client["pid"]
        .as_u64()
        .expect("the connecting process is known");
    assert!(f(&client["ms_in_old_state"]) < 100.0);

    // The client's whole life, in order (its port is only known from ESTABLISHED on).
    let client_states: Vec<(String, String)> = of_type(&recs, "tcp")
        .into_iter()
        .filter(|r| r["sport"] == cport || (r["sport"] == 0 && r["dport"] == port))
        .map(|r| (r["oldstate"].to_string(), r["newstate"].to_string()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("CLOSE", "SYN_SENT"),
        ("SYN_SENT", "ESTABLISHED"),
        ("ESTABLISHED", "FIN_WAIT1"),
        ("FIN_WAIT1", "FIN_WAIT2"),
        ("FIN_WAIT2", "CLOSE"),
    ]
    .iter()
    .map(|(a, b)| (format!("\"{a}\""), format!("\"{b}\"")))
    .collect();
    assert_eq!(client_states, expected);

    assert_held(
        f(&one(&recs, "ESTABLISHED", "FIN_WAIT1", cport)["ms_in_old_state"]),
        400.0,
    );
    let end = one(&recs, "FIN_WAIT2", "CLOSE", cport);
    assert_held(f(&end["duration_ms"]), 400.0);
    assert_eq!(end["tx_bytes"], 1234);
    assert_eq!(end["rx_bytes"], 56789);
    assert_eq!(end["pid"], pid);

    // The accepted socket: -c filters on the owner, and the owner of an accepted socket
    // is only known once its process closes it, so its handshake (done in softirq) is
    // not shown, while its close and end are.
    assert!(
        transitions(&recs, "SYN_RECV", "ESTABLISHED").is_empty(),
        "{recs:#?}"
    );
    let server_end = one(&recs, "LAST_ACK", "CLOSE", port);
    assert_eq!(server_end["dport"], cport);
    assert_eq!(server_end["pid"], pid);
    assert_eq!(server_end["tx_bytes"], 56789);
    assert_eq!(server_end["rx_bytes"], 1234);
    assert_held(f(&server_end["duration_ms"]), 400.0);

    let s = summary(&recs);
    assert_eq!(s["lost"]["ringbuf"], 0);
    assert_eq!(s["lost"]["map_full"], 0);
    assert_eq!(s["transitions"], of_type(&recs, "tcp").len());
}

#[test]
fn ipv6_loopback_and_owner_recorded_outside_softirq() {
    let _sockets = sockets_shared();
    let port = free_port();
    let p = port.to_string();
    let mut pid = 0;
    let recs = trace_around(&["tcp", "--json", "-6", "--port", &p], || {
        pid = run_workload(&["tcp-pair", "::1", &p, "300", "4096", "100"]);
        // The same port over IPv4: -6 must hide it.
        run_workload(&["tcp-pair", "127.0.0.1", &p, "0", "1", "1"]);
    });
    let port = port as u64;
    let all = of_type(&recs, "tcp");
    assert!(all.iter().all(|r| r["family"] == 6), "{all:#?}");

    let client = transitions(&recs, "SYN_SENT", "ESTABLISHED");
    assert_eq!(client.len(), 1, "{recs:#?}");
    let client = client[0];
    assert_eq!(client["saddr"], "::1");
    assert_eq!(client["daddr"], "::1");
    assert_eq!(client["dport"], port);
    assert_eq!(client["pid"], pid);
    let cport = client["sport"].as_u64().unwrap();

    // The accepted socket's handshake completes in softirq: its owner is not known yet
    // (null, not whichever task was interrupted); its close is done by the workload.
    let hs = one(&recs, "SYN_RECV", "ESTABLISHED", port);
    assert_eq!(hs["dport"], cport);
    assert!(hs["pid"].is_null() && hs["comm"].is_null(), "{hs}");
    let last_ack = one(&recs, "CLOSE_WAIT", "LAST_ACK", port);
    assert_eq!(last_ack["pid"], pid);
    assert_eq!(last_ack["comm"], "workload");

    let c_end = one(&recs, "FIN_WAIT2", "CLOSE", cport);
    assert_held(f(&c_end["duration_ms"]), 300.0);
    assert_eq!(
        (c_end["tx_bytes"].clone(), c_end["rx_bytes"].clone()),
        (4096.into(), 100.into())
    );
    let s_end = one(&recs, "LAST_ACK", "CLOSE", port);
    assert_held(f(&s_end["duration_ms"]), 300.0);
    assert_eq!(
        (s_end["tx_bytes"].clone(), s_end["rx_bytes"].clone()),
        (100.into(), 4096.into())
    );
    // Transitions that do not end a connection carry no end fields.
    assert!(client.get("duration_ms").is_none() && client.get("tx_bytes").is_none());
}

#[test]
fn port_filter_matches_either_end_of_several_ports() {
    let _sockets = sockets_shared();
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let (s1, s2, s3) = (p1.to_string(), p2.to_string(), p3.to_string());
    let recs = trace_around(&["tcp", "--json", "--port", &s1, "--port", &s2], || {
        for p in [&s1, &s2, &s3] {
            run_workload(&["tcp-pair", "127.0.0.1", p, "0", "10", "10"]);
        }
    });
    let all = of_type(&recs, "tcp");
    let has = |r: &Value, p: u16| r["sport"] == p || r["dport"] == p;
    assert!(all.iter().all(|r| has(r, p1) || has(r, p2)), "{all:#?}");
    for p in [p1, p2] {
        // Client (remote end matches) and accepted socket (local end matches).
        let ends: Vec<_> = transitions(&recs, "FIN_WAIT2", "CLOSE")
            .into_iter()
            .chain(transitions(&recs, "LAST_ACK", "CLOSE"))
            .filter(|r| has(r, p))
            .collect();
        assert_eq!(ends.len(), 2, "port {p}: {recs:#?}");
        assert!(ends.iter().any(|r| r["dport"] == p) && ends.iter().any(|r| r["sport"] == p));
    }
}

#[test]
fn address_ranges_between_namespaces() {
    let _sockets = sockets_shared();
    let ns = NetnsPair::new(1);
    let port = free_port().to_string();
    let v4_range = format!("{}/32", ns.server4);
    let recs = trace_around(
        &["tcp", "--json", "--addr", &v4_range, "--addr", &ns.net6],
        || {
            let across = |addr: &str| {
                run_workload(&[
                    "tcp-pair", addr, &port, "0", "300", "200", &ns.server, &ns.client,
                ]);
            };
            across(&ns.server4);
            across(&ns.server6);
            // Same port on loopback, outside every range.
            run_workload(&["tcp-pair", "127.0.0.1", &port, "0", "1", "1"]);
            run_workload(&["tcp-pair", "::1", &port, "0", "1", "1"]);
        },
    );
    let all = of_type(&recs, "tcp");
    let ours = [&ns.server4, &ns.client4, &ns.server6, &ns.client6];
    let inside = |a: &Value| ours.iter().any(|o| a == o.as_str());
    assert!(
        all.iter()
            .all(|r| inside(&r["saddr"]) || inside(&r["daddr"])),
        "{all:#?}"
    );
    for (family, client, server) in [(4, &ns.client4, &ns.server4), (6, &ns.client6, &ns.server6)] {
        // The client matches by its remote end, the accepted socket by its local end.
        let c = transitions(&recs, "FIN_WAIT2", "CLOSE");
        let c: Vec<_> = c.iter().filter(|r| r["family"] == family).collect();
        assert_eq!(c.len(), 1, "IPv{family}: {recs:#?}");
        assert_eq!(
            (&c[0]["saddr"], &c[0]["daddr"]),
            (&client.as_str().into(), &server.as_str().into())
        );
        assert_eq!(
            (c[0]["tx_bytes"].as_u64(), c[0]["rx_bytes"].as_u64()),
            (Some(300), Some(200))
        );
        let s = transitions(&recs, "LAST_ACK", "CLOSE");
        let s: Vec<_> = s.iter().filter(|r| r["family"] == family).collect();
        assert_eq!(s.len(), 1, "IPv{family}: {recs:#?}");
        assert_eq!(
            (&s[0]["saddr"], &s[0]["daddr"]),
            (&server.as_str().into(), &client.as_str().into())
        );
    }
}

#[test]
fn many_short_connections_are_each_reported_or_counted() {
    let _sockets = sockets_shared();
    const N: u64 = 10000;
    let port = free_port().to_string();
    let cmd = format!("{} --wait tcp-many 127.0.0.1 {port} {N}", workload());
    // Sockets whose end (CLOSE) the host hid from BPF (common/agent.rs).
    let hidden = AgentHits::start(
        "sock/inet_sock_set_state",
        &format!("newstate == 7 && (sport == {port} || dport == {port})"),
    );
    let t0 = std::time::Instant::now();
    let (recs, code, _) = trace_to_end(&["tcp", "--json", "--life", "--port", &port, "-c", &cmd]);
    let secs = t0.elapsed().as_secs_f64();
    let hidden = hidden.stop();
    assert_eq!(code, 0);
    let lives = of_type(&recs, "tcp_life");
    let s = summary(&recs);
    let dropped = s["lost"]["ringbuf"].as_u64().unwrap();
    eprintln!(
        "{N} connections in {secs:.2} s: {} reported, {dropped} dropped, {hidden} hidden",
        lives.len()
    );
    // Two sockets per connection: the client and the accepted one.
    assert_eq!(
        lives.len() as u64 + dropped + hidden,
        2 * N,
        "{hidden} hidden: {s}"
    );
    assert_eq!(s["connections"], lives.len());
    assert_eq!(s["lost"]["map_full"], 0);
    for r in &lives {
        assert!(
            r["sport"] == port.parse::<u64>().unwrap()
                || r["dport"] == port.parse::<u64>().unwrap()
        );
        assert_eq!(
            (r["tx_bytes"].as_u64(), r["rx_bytes"].as_u64()),
            (Some(0), Some(0)),
            "{r}"
        );
        assert!(
            f(&r["duration_ms"]) >= 0.0 && r["comm"] == "workload",
            "{r}"
        );
    }
}

#[test]
fn bad_filters_give_one_clear_line() {
    let e = one_line_error(&btrace(&["tcp", "--addr", "10.0.0.0/33", "-d", "1"]));
    assert!(
        e.contains("'10.0.0.0/33' is not an address range") && e.contains("0 to 32"),
        "{e}"
    );
    let e = one_line_error(&btrace(&["tcp", "--addr", "10.0.0/8", "-d", "1"]));
    assert!(e.contains("not an IPv4 or IPv6 address"), "{e}");
    let e = one_line_error(&btrace(&["tcp", "--port", "70000", "-d", "1"]));
    assert!(
        e.contains("--port 70000") && e.contains("1 to 65535"),
        "{e}"
    );
    let e = one_line_error(&btrace(&["tcp", "--port", "0", "-d", "1"]));
    assert!(e.contains("1 to 65535"), "{e}");
    let e = one_line_error(&btrace(&["tcp", "-4", "--addr", "fd00::/64", "-d", "1"]));
    assert!(
        e.contains("fd00::/64 is an IPv6 range") && e.contains("-4"),
        "{e}"
    );
    let e = one_line_error(&btrace(&["tcp", "-i", "1", "-d", "1"]));
    assert!(e.contains("unexpected argument '-i'"), "{e}");
}

/// A per-socket store far too small (10 entries for 201 sockets): every connection end is
/// either reported or counted, sockets that found the store full are counted once each,
/// and no byte count is wrong (a socket without its entry reports tx_bytes as unknown).
#[test]
fn a_full_store_loses_nothing_silently() {
    // Alone: an accepted socket has no owner yet when it is born (softirq), so every
    // socket born on the machine takes a slot of the store, other tests' included.
    let _sockets = sockets_alone();
    const N: u64 = 100;
    for hook in ["tp_btf", "tracepoint"] {
        let port = free_port();
        let cmd = format!(
            "{} --wait tcp-concurrent 127.0.0.1 {port} {N} 10",
            workload()
        );
        let (recs, code, _) = trace_to_end(&[
            "tcp",
            "--json",
            "--life",
            "--max-conns",
            "10",
            "--hook",
            hook,
            "-c",
            &cmd,
        ]);
        assert_eq!(code, 0);
        let s = summary(&recs);
        assert_eq!(s["store"], "hash", "{s}");
        // The listener and 2N connection sockets are born; the first 10 births fit.
        assert_eq!(s["untracked_sockets"], 2 * N + 1 - 10, "[{hook}] {s}");
        let lives = of_type(&recs, "tcp_life");
        let unattributed = s["unattributed"].as_u64().unwrap();
        let ringbuf = s["lost"]["ringbuf"].as_u64().unwrap();
        assert_eq!(
            lives.len() as u64 + unattributed + ringbuf,
            2 * N,
            "[{hook}] every end reported or counted: {s}"
        );
        // Clients send 10 bytes, the accepted sockets receive them.
        let mut exact = 0;
        for r in &lives {
            let (tx, rx) = if r["sport"] == port { (0, 10) } else { (10, 0) };
            assert_eq!(r["rx_bytes"], rx, "[{hook}] {r}");
            match r["tx_bytes"].as_u64() {
                Some(b) => {
                    assert_eq!(b, tx, "[{hook}] {r}");
                    exact += 1;
                }
                None => assert!(r["tx_bytes"].is_null()),
            }
        }
        assert!(
            exact >= 8,
            "[{hook}] tracked sockets keep exact bytes: {exact}"
        );
    }
}
