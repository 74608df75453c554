// SPDX-License-Identifier: Apache-2.0
//! Tracepoint hits no BPF program sees on the hosts these tests run on, counted by ftrace so
//! that a test can stay exact there.
//!
//! The hosts are firecracker guests (kernel 6.18.44-fc) whose pid 1 is the guest's agent,
//! /process_api (threads "tokio-rt-worker"). A hard interrupt or softirq that runs while one
//! of its threads is on the CPU reaches ftrace but no BPF program, and the programs'
//! recursion_misses stay 0, so btrace cannot count what it missed. Measured 2026-11-25:
//! `hrtimer_expire_entry` over 4 s, 9 hits over the agent in ftrace, 0 in BPF;
//! `softirq_entry` over 5 s, 15 against 0; a sleeper's 60 sched_wakeup, 60 in ftrace and
//! 57 in btrace, the 3 missing exactly the 3 over the agent.
//!
//! On any other host (pid 1 is not that agent) nothing is counted and the tests require
//! every event, as the VM checks do.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

const TRACEFS: &str = "/sys/kernel/tracing";

/// The agent's thread ids, when pid 1 is the firecracker guest agent.
fn agent_tids() -> Vec<u32> {
    let cmdline = fs::read("/proc/1/cmdline").unwrap_or_default();
    let exe = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    if exe != b"/process_api" {
        return Vec::new();
    }
    fs::read_dir("/proc/1/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Makes tracefs reachable from this thread. Hosts that do not mount it (the firecracker
/// guests do not) get it in a mount namespace of this test thread's own, as btrace mounts
/// it in its own: the machine's mounts stay as they were. The instance made through it is
/// the kernel's one tracefs, and the btrace this thread starts sees the same mount.
fn ensure_tracefs() {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    if PathBuf::from(TRACEFS).join("instances").is_dir() {
        return;
    }
    unshare(CloneFlags::CLONE_NEWNS).expect("a mount namespace for tracefs");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("making the test's mounts private");
    mount(
        Some("tracefs"),
        TRACEFS,
        Some("tracefs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .expect("mounting tracefs");
}

/// A tracefs instance of its own counting one event's hits over the agent's threads.
pub struct AgentHits {
    /// None when there is no such agent: nothing is hidden.
    instance: Option<PathBuf>,
    event: String,
}

impl AgentHits {
    /// Counts hits of `event` ("sched/sched_wakeup") that match `filter` (tracefs filter
    /// syntax over the event's fields) and run while a thread of the agent is current
    /// (its threads as they are now: the agent's runtime keeps a fixed set of workers).
    pub fn start(event: &str, filter: &str) -> AgentHits {
        let tids = agent_tids();
        if tids.is_empty() {
            return AgentHits {
                instance: None,
                event: event.into(),
            };
        }
        ensure_tracefs();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from(TRACEFS).join(format!(
            "instances/btrace-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("tracefs instance {dir:?}: {e}"));
        let over_agent = tids
            .iter()
            .map(|t| format!("common_pid == {t}"))
            .collect::<Vec<_>>()
            .join(" || ");
        let ev = dir.join("events").join(event);
        fs::write(ev.join("filter"), format!("({filter}) && ({over_agent})"))
            .unwrap_or_else(|e| panic!("filter of {event}: {e}"));
        fs::write(ev.join("enable"), "1").unwrap_or_else(|e| panic!("enable {event}: {e}"));
        AgentHits {
            instance: Some(dir),
            event: event.into(),
        }
    }

    /// Stops counting: the hits no BPF program was given.
    pub fn stop(self) -> u64 {
        let Some(dir) = &self.instance else {
            return 0;
        };
        fs::write(dir.join("tracing_on"), "0").unwrap();
        let name = self.event.rsplit('/').next().unwrap();
        let text = fs::read_to_string(dir.join("trace")).unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&format!(" {name}:")))
            .count() as u64
    }
}

impl Drop for AgentHits {
    fn drop(&mut self) {
        if let Some(dir) = &self.instance {
            let _ = fs::write(dir.join("events").join(&self.event).join("enable"), "0");
            let _ = fs::remove_dir(dir);
        }
    }
}
