// SPDX-License-Identifier: Apache-2.0
//! The tcp tracer driven in-process through the library, as the dashboard drives it:
//! load once, change the filter while it runs, and see the change take effect with no
//! reload. Run for each hook, so the classic tracepoint is exercised on this kernel too.

mod common;

use std::time::{Duration, Instant};

use btrace::core::scope::Scope;
use btrace::core::stream::EventStream;
use btrace::model::tcp::TcpState;
use btrace::tracers::tcp::event::TcpEvent;
use btrace::tracers::tcp::filter::{FilterSpec, TcpFilter};
use btrace::tracers::tcp::tracer::{self, Hook, Store, TcpOptions, Way};
use common::net::{free_port, run_workload};

/// Collects events until the listening socket on `port` closes (the workload's last
/// transition), or a deadline passes.
fn until_listener_closed(
    stream: &mut EventStream<TcpEvent>,
    events: &mut Vec<TcpEvent>,
    port: u16,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let done = |e: &TcpEvent| {
        e.sport == port && e.oldstate == TcpState::LISTEN && e.newstate == TcpState::CLOSE
    };
    while Instant::now() < deadline {
        let batch = stream.poll(Duration::from_millis(50)).unwrap();
        let finished = batch.iter().any(done);
        events.extend(batch);
        if finished {
            return;
        }
    }
    panic!("the listener on {port} never closed: {events:#?}");
}

fn on_port(events: &[TcpEvent], port: u16) -> usize {
    events
        .iter()
        .filter(|e| e.sport == port || e.dport == port)
        .count()
}

/// Per connection on loopback: client 5 transitions, accepted socket 5 (LISTEN ->
/// SYN_RECV first), listener 2.
const TRANSITIONS_PER_PAIR: usize = 12;

fn runtime_port_change(hook: Hook) {
    let (p1, p2) = (free_port(), free_port());
    let (s1, s2) = (p1.to_string(), p2.to_string());
    let spec = FilterSpec {
        ports: vec![p1],
        ..FilterSpec::default()
    };
    let way = Way {
        hook,
        store: Store::Hash,
    };
    let scope = Scope::default();
    let (skel, mut filter) = tracer::open_load(way, &TcpOptions::default(), &spec, &scope).unwrap();
    let _links = tracer::attach(&skel).unwrap();
    let mut stream = tracer::events(&skel).unwrap();
    let pair = |p: &str| run_workload(&["tcp-pair", "127.0.0.1", p, "0", "5", "5"]);

    // Before: only p1.
    let mut before = Vec::new();
    pair(&s2);
    pair(&s1);
    until_listener_closed(&mut stream, &mut before, p1);
    assert_eq!(on_port(&before, p1), TRANSITIONS_PER_PAIR, "{before:#?}");
    assert_eq!(on_port(&before, p2), 0, "{before:#?}");

    // Change the filter of the running programs: only p2.
    filter.set_ports(&[p2]).unwrap();
    assert_eq!(filter.spec().ports, vec![p2]);
    let mut after = Vec::new();
    pair(&s1);
    pair(&s2);
    until_listener_closed(&mut stream, &mut after, p2);
    assert_eq!(on_port(&after, p2), TRANSITIONS_PER_PAIR, "{after:#?}");
    assert_eq!(on_port(&after, p1), 0, "{after:#?}");

    // Both, through add_port; then a second handle on the same maps clears the filter.
    filter.add_port(p1).unwrap();
    let mut both = Vec::new();
    pair(&s1);
    pair(&s2);
    until_listener_closed(&mut stream, &mut both, p2);
    assert_eq!(on_port(&both, p1), TRANSITIONS_PER_PAIR);
    assert_eq!(on_port(&both, p2), TRANSITIONS_PER_PAIR);

    let mut other = TcpFilter::new(&skel).unwrap();
    other.clear().unwrap();
    let mut all = Vec::new();
    pair(&s1);
    until_listener_closed(&mut stream, &mut all, p1);
    assert_eq!(on_port(&all, p1), TRANSITIONS_PER_PAIR);

    // Closing bytes and owners come through this hook too.
    let end = both
        .iter()
        .find(|e| e.dport == p1 && e.newstate == TcpState::CLOSE)
        .expect("client's end");
    let end = end.end.as_ref().unwrap();
    assert_eq!((end.tx_bytes, end.rx_bytes), (Some(5), 5));
}

#[test]
fn port_filter_changes_while_running_tp_btf() {
    runtime_port_change(Hook::TpBtf);
}

#[test]
fn port_filter_changes_while_running_tracepoint() {
    runtime_port_change(Hook::Tracepoint);
}

#[test]
fn address_and_pid_filters_change_while_running() {
    let port = free_port();
    let p = port.to_string();
    let spec = FilterSpec {
        ports: vec![port],
        addrs: vec!["::1".parse().unwrap()],
        ..FilterSpec::default()
    };
    let (_hook, skel, mut filter, _links) =
        tracer::load_best(&TcpOptions::default(), &spec, &Scope::default()).unwrap();
    let mut stream = tracer::events(&skel).unwrap();

    let mut v6_only = Vec::new();
    run_workload(&["tcp-pair", "127.0.0.1", &p, "0", "1", "1"]);
    run_workload(&["tcp-pair", "::1", &p, "0", "1", "1"]);
    until_listener_closed(&mut stream, &mut v6_only, port);
    assert!(!v6_only.is_empty());
    assert!(v6_only.iter().all(|e| e.daddr.is_ipv6()), "{v6_only:#?}");

    filter.set_addrs(&["127.0.0.0/8".parse().unwrap()]).unwrap();
    let mut v4_only = Vec::new();
    run_workload(&["tcp-pair", "::1", &p, "0", "1", "1"]);
    run_workload(&["tcp-pair", "127.0.0.1", &p, "0", "1", "1"]);
    until_listener_closed(&mut stream, &mut v4_only, port);
    assert_eq!(v4_only.len(), TRANSITIONS_PER_PAIR, "{v4_only:#?}");
    assert!(v4_only.iter().all(|e| e.daddr.is_ipv4()), "{v4_only:#?}");

    // Owner filter: this test process's own connection is seen, the workload's not.
    filter.set_addrs(&[]).unwrap();
    filter.set_pid(Some(std::process::id())).unwrap();
    let mut mine = Vec::new();
    run_workload(&["tcp-pair", "127.0.0.1", &p, "0", "1", "1"]);
    {
        use std::io::Read;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        drop(client);
        assert_eq!(accepted.read(&mut [0u8; 1]).unwrap(), 0);
    }
    until_listener_closed(&mut stream, &mut mine, port);
    assert!(
        mine.iter().all(|e| e.pid == Some(std::process::id())),
        "{mine:#?}"
    );
    let seen = |old, new| {
        mine.iter()
            .filter(|e| e.oldstate == TcpState(old) && e.newstate == TcpState(new))
            .count()
    };
    // Client: connect and close in this process. Accepted socket: its handshake ran in
    // softirq before any owner was known, so it is not attributed to anyone; its close
    // (CLOSE_WAIT -> LAST_ACK -> CLOSE) is ours.
    assert_eq!(seen(2, 1), 1, "SYN_SENT -> ESTABLISHED: {mine:#?}");
    assert_eq!(seen(3, 1), 0, "SYN_RECV -> ESTABLISHED: {mine:#?}");
    assert_eq!(seen(8, 9), 1, "CLOSE_WAIT -> LAST_ACK: {mine:#?}");
    assert_eq!(seen(10, 7), 1, "LISTEN -> CLOSE: {mine:#?}");
    assert!(mine.iter().all(|e| e.comm.is_some()));
}
