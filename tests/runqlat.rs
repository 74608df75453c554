// SPDX-License-Identifier: Apache-2.0
//! `btrace runqlat` against the real kernel: a child that sleeps 1 ms N times is woken
//! N times (`woken`, less the rare wake-up the kernel hides from BPF, see LOST_TO_HOST),
//! and waits for a CPU after at most N of them (less the sleeps that never blocked, see
//! check_wakeups).

mod common;

use common::*;

const N: u64 = 60;

/// Every one of the N sleeps ends in a wake-up and a wait for a CPU, unless its timer
/// fired before the task was off the run queue (seen on loaded machines, 1 of 60 in TCG
/// guests): then it never waited (and a later preemption counts as one). So: at most one
/// wait after each wake-up seen and, with that slack of 3, at least that less 3; every wait
/// is either kind.
const SLACK: u64 = 3;

/// Wake-ups the kernel gives no BPF program: on the hosts these tests run on (a
/// firecracker guest, kernel 6.18.44-fc), a tracepoint hit in a hard interrupt that
/// arrived while the guest's own agent (/process_api, pid 1, threads "tokio-rt-worker")
/// was on the CPU reaches ftrace but no BPF program, and bpf_prog_info's recursion_misses
/// stays 0 (measured 2026-11-25: ftrace 60 sched_wakeup of the sleeper, btrace 57, the
/// 3 missing were exactly the 3 over the agent; hrtimer_expire_entry: ftrace 9 over the
/// agent, BPF 0). The sleeper's timer fires in a hard interrupt, so now and then one of
/// its wake-ups is lost that way (1 of 60 in a CI run). The VM checks, with no such agent,
/// still require every one (tests/vm/checks/runqlat.sh).
const LOST_TO_HOST: u64 = 3;

fn check_wakeups(r: &serde_json::Value) {
    // Every sleep ends in exactly one sched_wakeup, whether the task had left its CPU or
    // not (try_to_wake_up on a task still current, or still queued, traces it too).
    let woken = r["woken"].as_u64().unwrap();
    assert!(
        woken <= N && woken + LOST_TO_HOST >= N,
        "woken {woken} vs {N}: {r}"
    );
    let w = r["wakeups"].as_u64().unwrap();
    let p = r["preemptions"].as_u64().unwrap();
    // A wake-up not seen starts no wait either.
    assert!(
        w <= woken && w + SLACK >= woken,
        "wakeups {w} (preemptions {p}) vs {woken} woken: {r}"
    );
    assert_eq!(r["count"].as_u64().unwrap(), w + p, "{r}");
}

#[test]
fn wakeups_of_a_process() {
    let w = workload();
    let cmd = format!("{w} --wait wakeups {N}");
    // The child renames itself "wakee" before its first sleep.
    let (recs, code, _) = trace_to_end(&[
        "runqlat",
        "--json",
        "--per-process",
        "--comm",
        "wakee",
        "-c",
        &cmd,
    ]);
    assert_eq!(code, 0);
    let all: Vec<_> = of_type(&recs, "runq")
        .into_iter()
        .filter(|r| r["key"] == "all")
        .collect();
    assert_eq!(all.len(), 1, "{recs:#?}");
    check_wakeups(all[0]);
    let count = all[0]["count"].as_u64().unwrap();
    let procs: Vec<_> = of_type(&recs, "runq")
        .into_iter()
        .filter(|r| r["key"] == "process")
        .collect();
    assert_eq!(procs.len(), 1, "{procs:#?}");
    assert_eq!(procs[0]["comm"], "wakee");
    check_wakeups(procs[0]);
    let buckets: u64 = procs[0]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(buckets, count);
    for p in ["p50_us", "p90_us", "p99_us"] {
        assert!(procs[0][p].as_u64().is_some(), "{p} in {}", procs[0]);
    }
    let s = summary(&recs);
    assert_eq!(s["lost"]["map_full"], 0);
}

#[test]
fn the_whole_tree_of_a_command() {
    let w = workload();
    let cmd = format!("{w} --wait wakeups {N}");
    let (recs, code, _) = trace_to_end(&["runqlat", "--json", "--per-process", "-c", &cmd]);
    assert_eq!(code, 0);
    let procs: Vec<_> = of_type(&recs, "runq")
        .into_iter()
        .filter(|r| r["key"] == "process")
        .collect();
    // The child: its first run after fork (a wake-up of a new task) and N sleeps.
    assert!(
        procs.iter().any(|p| {
            let w = p["wakeups"].as_u64().unwrap();
            let woken = p["woken"].as_u64().unwrap();
            woken <= N + 1 && woken + LOST_TO_HOST > N && w <= woken && w + SLACK >= woken
        }),
        "{procs:#?}"
    );
    let all = of_type(&recs, "runq")
        .into_iter()
        .find(|r| r["key"] == "all")
        .unwrap();
    let sum: u64 = procs.iter().map(|p| p["count"].as_u64().unwrap()).sum();
    assert_eq!(all["count"].as_u64().unwrap(), sum);
}

#[test]
fn raw_tp_hook_counts_the_same_wakeups() {
    let w = workload();
    let cmd = format!("{w} --wait wakeups {N}");
    let (recs, code, _) = trace_to_end(&[
        "runqlat", "--json", "--comm", "wakee", "--hook", "raw_tp", "-c", &cmd,
    ]);
    assert_eq!(code, 0);
    let s = summary(&recs);
    assert_eq!(s["hook"], "raw_tp");
    let all = of_type(&recs, "runq")
        .into_iter()
        .find(|r| r["key"] == "all")
        .unwrap();
    check_wakeups(all);
}

/// This process's cgroup v2 path ("0::PATH" in /proc/self/cgroup).
fn own_cgroup() -> String {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        .expect("a cgroup v2 line")
}

#[test]
fn per_cgroup_puts_the_wakeups_in_the_commands_cgroup() {
    let w = workload();
    let cmd = format!("{w} --wait wakeups {N}");
    let (recs, code, _) = trace_to_end(&[
        "runqlat",
        "--json",
        "--per-cgroup",
        "--comm",
        "wakee",
        "-c",
        &cmd,
    ]);
    assert_eq!(code, 0);
    let cg: Vec<_> = of_type(&recs, "runq")
        .into_iter()
        .filter(|r| r["key"] == "cgroup")
        .collect();
    assert_eq!(cg.len(), 1, "{recs:#?}");
    check_wakeups(cg[0]);
    assert_eq!(cg[0]["cgroup"], own_cgroup().as_str(), "{}", cg[0]);
    assert!(cg[0]["cgroup_id"].as_u64().unwrap() > 0);
}
