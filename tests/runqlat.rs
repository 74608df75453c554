// SPDX-License-Identifier: Apache-2.0
//! `btrace runqlat` against the real kernel: a child that sleeps 1 ms N times is woken
//! exactly N times (`woken`, less the wake-ups the host hides from every BPF program, which
//! ftrace counts, see common/agent.rs), and waits for a CPU after at most N of them (less
//! the sleeps that never blocked, see check_wakeups).

mod common;

use common::agent::AgentHits;
use common::*;

const N: u64 = 60;

/// Every one of the N sleeps ends in a wake-up and a wait for a CPU, unless its timer
/// fired before the task was off the run queue (seen on loaded machines, 1 of 60 in TCG
/// guests): then it never waited (and a later preemption counts as one). So: at most one
/// wait after each wake-up seen and, with that slack of 3, at least that less 3; every wait
/// is either kind.
const SLACK: u64 = 3;

/// Traces the sleeper, named `name` (each test its own, as they run side by side), with
/// btrace `args` then `-c`: the records, and the sleeper's wake-ups no BPF program got.
fn trace_sleeper(name: &str, args: &[&str]) -> (Vec<serde_json::Value>, u64) {
    let cmd = format!("{} --wait wakeups {N} {name}", workload());
    let hidden = AgentHits::start("sched/sched_wakeup", &format!("comm == \"{name}\""));
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-c", &cmd]);
    let (recs, code, _) = trace_to_end(&all);
    assert_eq!(code, 0);
    (recs, hidden.stop())
}

/// `r` holds the sleeper's N sleeps, of which `hidden` wake-ups no BPF program was given.
fn check_wakeups(r: &serde_json::Value, hidden: u64) {
    // Every sleep ends in exactly one sched_wakeup, whether the task had left its CPU or
    // not (try_to_wake_up on a task still current, or still queued, traces it too).
    assert_eq!(r["woken"], N - hidden, "{hidden} hidden: {r}");
    let w = r["wakeups"].as_u64().unwrap();
    let p = r["preemptions"].as_u64().unwrap();
    // A wake-up not seen starts no wait either.
    assert!(
        w <= N - hidden && w + SLACK >= N - hidden,
        "wakeups {w} (preemptions {p}) vs {N} less {hidden} hidden: {r}"
    );
    assert_eq!(r["count"].as_u64().unwrap(), w + p, "{r}");
}

#[test]
fn wakeups_of_a_process() {
    // The child renames itself before its first sleep.
    let (recs, hidden) = trace_sleeper(
        "wakee-proc",
        &["runqlat", "--json", "--per-process", "--comm", "wakee-proc"],
    );
    let all: Vec<_> = of_type(&recs, "runq")
        .into_iter()
        .filter(|r| r["key"] == "all")
        .collect();
    assert_eq!(all.len(), 1, "{recs:#?}");
    check_wakeups(all[0], hidden);
    let count = all[0]["count"].as_u64().unwrap();
    let procs: Vec<_> = of_type(&recs, "runq")
        .into_iter()
        .filter(|r| r["key"] == "process")
        .collect();
    assert_eq!(procs.len(), 1, "{procs:#?}");
    assert_eq!(procs[0]["comm"], "wakee-proc");
    check_wakeups(procs[0], hidden);
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
    let (recs, hidden) = trace_sleeper("wakee-tree", &["runqlat", "--json", "--per-process"]);
    let procs: Vec<_> = of_type(&recs, "runq")
        .into_iter()
        .filter(|r| r["key"] == "process")
        .collect();
    // The child: its first run after fork (a wake-up of a new task, never in an interrupt,
    // under the name it inherited, before it renames itself: a row of its own) and N
    // sleeps; its rows add up to those.
    let want = N + 1 - hidden;
    let child = procs
        .iter()
        .find(|p| p["comm"] == "wakee-tree")
        .unwrap_or_else(|| panic!("{procs:#?}"));
    let rows = procs.iter().filter(|p| p["pid"] == child["pid"]);
    let field = |f: &str| rows.clone().map(|p| p[f].as_u64().unwrap()).sum::<u64>();
    let (woken, w) = (field("woken"), field("wakeups"));
    assert_eq!(woken, want, "{hidden} hidden: {procs:#?}");
    assert!(
        w <= want && w + SLACK >= want,
        "{hidden} hidden: {procs:#?}"
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
    let (recs, hidden) = trace_sleeper(
        "wakee-raw",
        &[
            "runqlat",
            "--json",
            "--comm",
            "wakee-raw",
            "--hook",
            "raw_tp",
        ],
    );
    let s = summary(&recs);
    assert_eq!(s["hook"], "raw_tp");
    let all = of_type(&recs, "runq")
        .into_iter()
        .find(|r| r["key"] == "all")
        .unwrap();
    check_wakeups(all, hidden);
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
    let (recs, hidden) = trace_sleeper(
        "wakee-cgroup",
        &[
            "runqlat",
            "--json",
            "--per-cgroup",
            "--comm",
            "wakee-cgroup",
        ],
    );
    let cg: Vec<_> = of_type(&recs, "runq")
        .into_iter()
        .filter(|r| r["key"] == "cgroup")
        .collect();
    assert_eq!(cg.len(), 1, "{recs:#?}");
    check_wakeups(cg[0], hidden);
    assert_eq!(cg[0]["cgroup"], own_cgroup().as_str(), "{}", cg[0]);
    assert!(cg[0]["cgroup_id"].as_u64().unwrap() > 0);
}

/// A process is shown under the name it had when it waited: the sleeper sleeps N times
/// as `wk-before`, renames itself (as an exec does) and sleeps N times as `wk-after`: one
/// row per name, both with its pid, each with exactly its own N wake-ups.
#[test]
fn a_process_is_named_as_it_was_when_it_waited() {
    let cmd = format!(
        "{} --wait wakeups-renamed {N} wk-before wk-after",
        workload()
    );
    let hidden_before = AgentHits::start("sched/sched_wakeup", "comm == \"wk-before\"");
    let hidden_after = AgentHits::start("sched/sched_wakeup", "comm == \"wk-after\"");
    let (recs, code, _) = trace_to_end(&["runqlat", "--json", "--per-process", "-c", &cmd]);
    assert_eq!(code, 0);
    let (hidden_before, hidden_after) = (hidden_before.stop(), hidden_after.stop());
    let procs: Vec<_> = of_type(&recs, "runq")
        .into_iter()
        .filter(|r| r["key"] == "process")
        .collect();
    let row = |name: &str| {
        let rows: Vec<_> = procs.iter().filter(|r| r["comm"] == name).collect();
        assert_eq!(rows.len(), 1, "{name}: {procs:#?}");
        *rows[0]
    };
    let (before, after) = (row("wk-before"), row("wk-after"));
    assert_eq!(before["pid"], after["pid"], "the same process");
    check_wakeups(before, hidden_before);
    check_wakeups(after, hidden_after);
}
