// SPDX-License-Identifier: Apache-2.0
//! `btrace offcpu` against the real kernel: 20 sleeps of 50 ms in block_here
//! (tests/workload/stackload.c) are 1.0 s off CPU on that stack, in 20 blocks.

mod common;

use common::agent::AgentHits;
use common::*;
use serde_json::Value;

#[test]
fn twenty_sleeps_of_50_ms_are_one_second_on_their_stack() {
    let cmd = format!("{} block 20 50", stackload());
    let wall_file = std::env::temp_dir().join(format!("btrace-offcpu-{}", std::process::id()));
    let out = std::process::Command::new(btrace_bin())
        .args(["offcpu", "--json", "-c", &cmd])
        .env("STACKLOAD_BLOCK_FILE", &wall_file)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The wall time the workload measured around its sleeps (sleep, wakeup, wait for a
    // CPU): an upper bound.
    let wall: u64 = std::fs::read_to_string(&wall_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let recs = parse_ndjson(&out.stdout);
    let mine: Vec<&Value> = of_type(&recs, "stack")
        .into_iter()
        .filter(|r| r["comm"] == "stackload" && stack_has(r, "user_stack", "block_here"))
        .collect();
    // Records are (kernel stack, user stack) pairs: a sleep that blocked through another
    // kernel path (a wake-up taken in a different place) is a second record of the same
    // user stack. Together they hold every one of the 20 blocks.
    assert!(!mine.is_empty(), "no stack for the sleeps: {recs:?}");
    let ns: u64 = mine.iter().map(|r| r["total_ns"].as_u64().unwrap()).sum();
    let blocks: u64 = mine.iter().map(|r| r["blocks"].as_u64().unwrap()).sum();
    assert_eq!(blocks, 20, "{mine:?}");
    let r = mine
        .iter()
        .max_by_key(|r| r["blocks"].as_u64().unwrap())
        .unwrap();
    eprintln!("{ns} ns blocked; the workload measured {wall} ns around its sleeps");
    assert!(
        ns <= wall,
        "{ns} ns blocked, more than the {wall} ns the sleeps took"
    );
    if wall <= 1_100_000_000 {
        assert!(
            (900_000_000..=1_100_000_000).contains(&ns),
            "{ns} ns blocked, want 1.0 s ± 10 %"
        );
    } else {
        // A host busy enough to make the sleeps themselves overrun (timer interrupts of a
        // descheduled vCPU come late): the blocks did last that long, less the stretch of
        // each sleep spent on the CPU after its timer was armed (1 ms allowed per block).
        assert!(
            ns >= 980_000_000,
            "{ns} ns blocked: less than 20 x (50 - 1) ms"
        );
    }
    assert!(stack_has(r, "kernel_stack", "do_nanosleep"), "{r}");
    assert!(stack_has(r, "kernel_stack", "schedule"), "{r}");
    let s = summary(&recs);
    let total: u64 = of_type(&recs, "stack")
        .iter()
        .map(|r| r["total_ns"].as_u64().unwrap())
        .sum();
    assert_eq!(
        s["total_ns"].as_u64().unwrap(),
        total,
        "summary total is the exact sum"
    );
    assert_eq!(s["lost"]["map_full"], 0);
    // The time from the end of collection to the report written (make bench reads it).
    let report_s = s["report_s"].as_f64().expect("report_s");
    assert!(report_s > 0.0 && report_s < 60.0, "{s}");
}

#[test]
fn min_block_leaves_out_shorter_blocks() {
    // 10 sleeps of 5 ms, all under --min-block 20000 (20 ms)
    let cmd = format!("{} block 10 5", stackload());
    let out = btrace(&["offcpu", "--json", "--min-block", "20000", "-c", &cmd]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = parse_ndjson(&out.stdout);
    assert!(
        !of_type(&recs, "stack")
            .iter()
            .any(|r| stack_has(r, "user_stack", "block_here")),
        "5 ms sleeps kept with --min-block 20 ms"
    );
    assert_eq!(summary(&recs)["min_block_us"], 20000);
}

#[test]
fn text_output_names_the_blocking_function() {
    let cmd = format!("{} block 5 20", stackload());
    let out = btrace(&["offcpu", "-c", &cmd]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("in 5 blocks"), "{text}");
    assert!(text.contains("block_here"), "{text}");
    assert!(text.contains("Traced off-CPU time via "), "{text}");
}

/// `offcpu` of a fork storm: 600 short processes (two at a time), each sleeping 5 ms
/// three times in block_here on a stack of its own depth (stackload storm). Returns the
/// records, how many times the children blocked by the kernel's own count (their
/// voluntary context switches), and how many of the storm's wake-ups no BPF program was
/// given (tests/common/agent.rs).
fn storm(extra: &[&str]) -> (Vec<Value>, u64, u64) {
    let cmd = format!("{} storm 600 0 3", stackload());
    let switch_file = std::env::temp_dir().join(format!(
        "btrace-offcpu-storm-{}-{}",
        std::process::id(),
        extra.join("")
    ));
    let mut args = vec!["offcpu", "--json", "--max-counts", "256"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-c", &cmd]);
    let hidden = AgentHits::start("sched/sched_wakeup", "comm == \"stackload\"");
    let out = std::process::Command::new(btrace_bin())
        .args(&args)
        .env("STACKLOAD_SWITCH_FILE", &switch_file)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let switches = std::fs::read_to_string(&switch_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = std::fs::remove_file(&switch_file);
    (parse_ndjson(&out.stdout), switches, hidden.stop())
}

#[test]
fn a_fork_storm_against_a_tiny_table_loses_no_block() {
    // Counts buffers of 256 entries: each child's sleeps are an entry of their own (its
    // thread), 600 of them, so only draining while running keeps them all.
    let (recs, switches, hidden) = storm(&["--max-stacks", "256"]);
    let s = summary(&recs);
    let stacks = of_type(&recs, "stack");
    // The children's blocks: every stackload block but the parent's (in wait4). Not by
    // their stack: a child that exits before its maps are read has its frames unnamed.
    let parent: Vec<u64> = stacks
        .iter()
        .filter(|r| r["comm"] == "stackload" && stack_has(r, "user_stack", "__wait4"))
        .map(|r| r["pid"].as_u64().unwrap())
        .collect();
    assert!(!parent.is_empty(), "the parent's waits: {stacks:?}");
    let sleeps: u64 = stacks
        .iter()
        .filter(|r| r["comm"] == "stackload" && !parent.contains(&r["pid"].as_u64().unwrap()))
        .map(|r| r["blocks"].as_u64().unwrap())
        .sum();
    let blocks: u64 = stacks.iter().map(|r| r["blocks"].as_u64().unwrap()).sum();
    eprintln!(
        "{} entries, {blocks} blocks, {} drains",
        stacks.len(),
        s["drains"]
    );
    assert!(stacks.len() > 512, "{} entries", stacks.len());
    assert_eq!(s["lost"]["map_full"], 0, "{s}");
    assert_eq!(s["stack_losses"]["map_full"], 0, "{s}");
    // Every time a child left its CPU blocked is a block, kept or counted as unseen (its
    // wakeup and its switch back in both hidden from BPF: only where wake-ups are hidden,
    // tests/common/agent.rs). 600 x 3 sleeps, less those whose timer fired while the
    // child waited for a CPU (the sleep then returns without blocking, and the kernel
    // counts no switch either).
    let unseen = s["lost"]["missed"].as_u64().unwrap();
    assert_eq!(
        sleeps + unseen,
        switches,
        "blocks of the children kept and unseen against their voluntary switches: {s}"
    );
    assert!(
        unseen <= hidden,
        "{unseen} blocks unseen, {hidden} wake-ups hidden: {s}"
    );
    assert!(sleeps > 1700, "{sleeps} of 600 x 3 sleeps blocked");
    assert_eq!(s["blocks"].as_u64().unwrap(), blocks, "{s}");
    assert_eq!(
        s["blocks_seen"].as_u64().unwrap(),
        blocks,
        "every block the kernel saw is kept: {s}"
    );
}

#[test]
fn a_full_table_is_counted_and_the_blocks_kept_say_so() {
    // The control of the test above: the same storm without draining loses blocks, and
    // kept + lost = seen.
    let (recs, ..) = storm(&["--no-drain"]);
    let s = summary(&recs);
    let lost = s["lost"]["map_full"].as_u64().unwrap();
    assert!(lost > 0, "the 256-entry table did not fill: {s}");
    assert_eq!(
        s["blocks"].as_u64().unwrap() + lost,
        s["blocks_seen"].as_u64().unwrap(),
        "{s}"
    );
}

/// `--user-stacks`/`--kernel-stacks` choose which side of each stack is walked; every
/// thread is still counted (offcputime's -u/-k, user or kernel threads only, are a
/// different thing, so btrace's flags are not named `--user`/`--kernel`: those are refused
/// with a pointer to the right name).
#[test]
fn user_stacks_and_kernel_stacks_walk_one_side() {
    let cmd = format!("{} block 5 20", stackload());
    let frames = |r: &Value, side: &str| r[side].as_array().map_or(0, |a| a.len());
    for (flag, walked, skipped) in [
        ("--user-stacks", "user_stack", "kernel_stack"),
        ("--kernel-stacks", "kernel_stack", "user_stack"),
    ] {
        let out = btrace(&["offcpu", "--json", flag, "-c", &cmd]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let recs = parse_ndjson(&out.stdout);
        let mine: Vec<&Value> = of_type(&recs, "stack")
            .into_iter()
            .filter(|r| r["comm"] == "stackload")
            .collect();
        let blocks: u64 = mine.iter().map(|r| r["blocks"].as_u64().unwrap()).sum();
        assert!(blocks >= 5, "{flag}: the 5 sleeps, all counted: {mine:?}");
        assert!(
            mine.iter().all(|r| frames(r, skipped) == 0),
            "{flag}: {mine:?}"
        );
        assert!(
            mine.iter().any(|r| frames(r, walked) > 0),
            "{flag}: {mine:?}"
        );
    }
    for old in ["--user", "--kernel"] {
        let out = btrace(&["offcpu", old, "-d", "0.1"]);
        assert_eq!(out.status.code(), Some(2), "{old} is refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("'{old}-stacks'")), "{old}: {err}");
    }
}

/// Descriptors and memory stay bounded however many processes come and go: 3,000 short
/// processes, each blocking once (so each is seen, its maps read), under a limit of 256
/// open files. Before, btrace kept one descriptor per process (its root directory) and
/// ended with "Too many open files", printing nothing.
#[test]
fn three_thousand_short_processes_under_a_low_descriptor_limit() {
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};
    const PROCS: usize = 3000;
    let cmd = format!("{} shortlived {PROCS} 2", workload());
    let mut c = std::process::Command::new(btrace_bin());
    c.args(["offcpu", "--json", "--user-stacks", "-c", &cmd])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = c.spawn().unwrap();
    let pid = child.id();
    // Output is read by wait_with_output; meanwhile, descriptors and RSS are sampled
    // from another thread while the workload runs (btrace's child alive).
    let sampler = std::thread::spawn(move || {
        let mut samples: Vec<(Duration, usize, u64)> = Vec::new();
        let t0 = Instant::now();
        let children = format!("/proc/{pid}/task/{pid}/children");
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let running = std::fs::read_to_string(&children)
                .map(|s| !s.trim().is_empty())
                .unwrap_or(false);
            if !running {
                if t0.elapsed() > Duration::from_secs(3) || !samples.is_empty() {
                    break;
                }
                continue;
            }
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count());
            let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
                    l.split_whitespace().nth(1)?.parse::<u64>().ok()
                });
            if let (Ok(fds), Some(rss)) = (fds, rss) {
                samples.push((t0.elapsed(), fds, rss));
            }
        }
        samples
    });
    let out = child.wait_with_output().unwrap();
    let samples = sampler.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(samples.len() >= 10, "too few samples: {samples:?}");
    // From one second in (every program attached, the workload's binary read) to the
    // end of the workload: flat.
    let steady: Vec<_> = samples
        .iter()
        .filter(|s| s.0 >= samples[0].0 + Duration::from_secs(1))
        .collect();
    assert!(steady.len() >= 5, "{samples:?}");
    let (fd0, rss0) = (steady[0].1, steady[0].2);
    let fd_max = steady.iter().map(|s| s.1).max().unwrap();
    let rss_max = steady.iter().map(|s| s.2).max().unwrap();
    assert!(fd_max <= fd0 + 8, "descriptors grew: {samples:?}");
    // Memory grows only by the report's rows: each short process's own counts and
    // symbolized stack are kept (the kernel's tables are drained into user space, nothing
    // is dropped), well under 1 KB each; the maps and files of ended processes are let go
    // (before, every process kept its root directory and files open: "Too many open
    // files").
    let rss_allowed_kb = 2048 + PROCS as u64;
    assert!(
        rss_max <= rss0 + rss_allowed_kb,
        "RSS grew by more than {rss_allowed_kb} KB: {samples:?}"
    );
    // The report is there: every child's block, its user stack symbolized although the
    // child was long gone by the end (not those that ended before btrace read their
    // maps: a child lives about 2 ms, so on a loaded machine, where btrace waits for a
    // CPU, up to a fifth of them; 2445 of 3000 were named at a load average of 11).
    let recs = parse_ndjson(&out.stdout);
    let s = summary(&recs);
    assert_eq!(s["stack_losses"]["unreadable_file_frames"], 0, "{s}");
    let stacks = of_type(&recs, "stack");
    let children = stacks
        .iter()
        .filter(|r| r["blocks"].as_u64() == Some(1))
        .filter(|r| stack_has(r, "user_stack", "syscall"))
        .count();
    // (This host hides a few scheduler events from BPF: see tests/common/agent.rs.)
    assert!(stacks.len() >= PROCS * 99 / 100, "{} stacks", stacks.len());
    assert!(
        children >= PROCS * 3 / 4,
        "{children} of {PROCS} children's blocks with a symbolized user stack"
    );
}

/// A process renamed to an escape sequence and a newline: shown escaped in the text
/// report and in folded stacks; JSON carries the name as it is.
#[test]
fn a_hostile_process_name_is_escaped_in_text_and_folded() {
    let cmd = hostile_cmd("sleep", "20");
    for args in [
        &["offcpu", "-c", &cmd][..],
        &["offcpu", "--folded", "-c", &cmd],
    ] {
        let out = btrace(args);
        assert!(out.status.success(), "{args:?}");
        assert_name_escaped(&out);
    }
    let out = btrace(&["offcpu", "--json", "-c", &cmd]);
    let recs = parse_ndjson(&out.stdout);
    assert!(
        of_type(&recs, "stack")
            .iter()
            .any(|r| r["comm"] == HOSTILE_NAME),
        "{recs:?}"
    );
}
