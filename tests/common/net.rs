// SPDX-License-Identifier: Apache-2.0
//! Network helpers for the tcp tests: ports nobody else uses, test-owned network
//! namespaces joined by a veth pair (removed even when the test fails), the workload.

use std::net::{TcpListener, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};

/// A port below the ephemeral range (so no client socket of a concurrent test picks it
/// as its source port) that is free on 127.0.0.1 and ::1 right now. Different for each
/// call and each test process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20000 + (std::process::id() % 500) as u16 * 20;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = base + n % 10000;
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("::1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            return port;
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two network namespaces made by this test, joined by a veth pair:
/// `client` holds 10.200.X.1/24 and fd00:200:X::1/64, `server` 10.200.X.2/24 and
/// fd00:200:X::2/64. Both are deleted on drop (the veth pair goes with them).
pub struct NetnsPair {
    pub client: String,
    pub server: String,
    pub client4: String,
    pub server4: String,
    pub client6: String,
    pub server6: String,
    /// 10.200.X.0/24
    pub net4: String,
    /// fd00:200:X::/64
    pub net6: String,
}

impl NetnsPair {
    /// `tag` tells apart the pairs of one test process (0..=9).
    pub fn new(tag: u32) -> NetnsPair {
        let pid = std::process::id();
        let x = (pid * 10 + tag) % 250 + 1;
        let pair = NetnsPair {
            client: format!("btrace-{pid}-{tag}-c"),
            server: format!("btrace-{pid}-{tag}-s"),
            client4: format!("10.200.{x}.1"),
            server4: format!("10.200.{x}.2"),
            client6: format!("fd00:200:{x:x}::1"),
            server6: format!("fd00:200:{x:x}::2"),
            net4: format!("10.200.{x}.0/24"),
            net6: format!("fd00:200:{x:x}::/64"),
        };
        // The guard exists before anything is made, so a failure half-way cleans up.
        ip(&["netns", "add", &pair.client]);
        ip(&["netns", "add", &pair.server]);
        let (vc, vs) = (format!("bt{pid}{tag}c"), format!("bt{pid}{tag}s"));
        ip(&[
            "link",
            "add",
            &vc,
            "netns",
            &pair.client,
            "type",
            "veth",
            "peer",
            "name",
            &vs,
            "netns",
            &pair.server,
        ]);
        for (ns, dev, a4, a6) in [
            (&pair.client, &vc, &pair.client4, &pair.client6),
            (&pair.server, &vs, &pair.server4, &pair.server6),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "addr", "add", &format!("{a4}/24"), "dev", dev]);
            // nodad: usable at once, no duplicate address detection delay.
            ip(&[
                "-n",
                ns,
                "-6",
                "addr",
                "add",
                &format!("{a6}/64"),
                "dev",
                dev,
                "nodad",
            ]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        pair
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Runs the workload to completion and asserts it succeeded; returns its pid.
pub fn run_workload(args: &[&str]) -> u32 {
    let mut child = Command::new(super::workload())
        .args(args)
        .spawn()
        .expect("starting the workload");
    let pid = child.id();
    let status = child.wait().unwrap();
    assert!(status.success(), "workload {args:?}: {status:?}");
    pid
}
