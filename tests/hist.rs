// SPDX-License-Identifier: Apache-2.0
//! `btrace hist` against the real kernel, with a workload of exactly known syscalls.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// The hist record of one syscall, if present.
fn hist_of<'a>(records: &'a [Value], name: &str) -> Option<&'a Value> {
    records
        .iter()
        .find(|r| r["type"] == "hist" && r["syscall"] == name)
}

fn total(records: &[Value], name: &str) -> u64 {
    records
        .iter()
        .filter(|r| r["type"] == "hist" && r["syscall"] == name)
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

/// Every record's buckets add up to its total, and the bounds are log2 microseconds.
fn check_buckets(records: &[Value]) {
    for r in of_type(records, "hist") {
        let buckets = r["buckets"].as_array().unwrap();
        let sum: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
        assert_eq!(sum, r["count"].as_u64().unwrap(), "buckets vs count in {r}");
        assert!(
            r["total"].as_u64().unwrap() >= sum,
            "total is since start: {r}"
        );
        assert_eq!(r["unit"], "us");
        for b in buckets {
            let lo = b["lo"].as_u64().unwrap();
            if let Some(hi) = b["hi"].as_u64() {
                assert!(hi == 1 && lo == 0 || hi == 2 * lo, "bad bounds {b}");
            }
        }
    }
}

#[test]
fn exact_counts_for_a_command_and_other_processes_excluded() {
    let w = workload();
    // A concurrent process hammering the same syscall must not leak into the counts.
    let mut noise = Command::new(&w)
        .args(["spread", "3000000"])
        .spawn()
        .unwrap();
    let cmd = format!("{w} --wait syscalls 1000 500");
    let (recs, code, _) = trace_to_end(&["hist", "--json", "-c", &cmd]);
    noise.kill().ok();
    noise.wait().ok();
    assert_eq!(code, 0);
    assert_eq!(total(&recs, "getppid"), 1000, "{recs:?}");
    assert_eq!(total(&recs, "read"), 500, "{recs:?}");
    check_buckets(&recs);
    let g = hist_of(&recs, "getppid").unwrap();
    assert!(g["sum_ns"].as_u64().unwrap() > 0);
    assert_eq!(g["nr"], 110);
    let s = summary(&recs);
    assert_eq!(s["lost"]["map_full"], 0);
    assert!(s["duration_s"].as_f64().unwrap() > 0.0);
}

/// Every fallback hook counts exactly too (the host picks tp_btf; older or unusual
/// kernels fall back to raw_tp or the classic tracepoint).
#[test]
fn every_hook_counts_exactly() {
    let cmd = format!("{} --wait syscalls 400 300", workload());
    for hook in ["tp_btf", "raw_tp", "tracepoint"] {
        let (recs, code, _) = trace_to_end(&["hist", "--json", "--hook", hook, "-c", &cmd]);
        assert_eq!(code, 0);
        assert_eq!(summary(&recs)["hook"], hook);
        assert_eq!(total(&recs, "getppid"), 400, "{hook}: {recs:?}");
        assert_eq!(total(&recs, "read"), 300, "{hook}: {recs:?}");
        check_buckets(&recs);
    }
}

#[test]
fn syscall_filter_and_top() {
    let cmd = format!("{} --wait syscalls 300 200", workload());
    let (recs, code, _) =
        trace_to_end(&["hist", "--json", "--syscalls", "getppid,read", "-c", &cmd]);
    assert_eq!(code, 0);
    let names: Vec<_> = of_type(&recs, "hist")
        .iter()
        .map(|r| r["syscall"].clone())
        .collect();
    assert_eq!(
        names,
        vec!["getppid", "read"],
        "only the filtered syscalls, busiest first"
    );
    assert_eq!(total(&recs, "getppid"), 300);
    assert_eq!(total(&recs, "read"), 200);

    let (recs, _, _) = trace_to_end(&["hist", "--json", "--top", "1", "-c", &cmd]);
    let hists = of_type(&recs, "hist");
    assert_eq!(hists.len(), 1);
    assert_eq!(hists[0]["syscall"], "getppid");
}

#[test]
fn pid_mode_ends_with_the_process_and_counts_exactly() {
    let mut target = Command::new(workload())
        .args(["--wait", "syscalls", "700", "300"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = target.id().to_string();
    let mut r = Running::start(&["hist", "--json", "-p", &pid]);
    let ids = r.wait_attached();
    target.stdin.take().unwrap().write_all(b"go\n").unwrap();
    target.wait().unwrap();
    // btrace must notice the exit by itself: no signal is sent.
    let (recs, code, _) = r.finish();
    assert_unloaded(&ids);
    assert_eq!(code, 0);
    assert_eq!(total(&recs, "getppid"), 700, "{recs:?}");
    assert_eq!(total(&recs, "read"), 300, "{recs:?}");
    assert_eq!(summary(&recs)["end"], "TargetExited");
}

#[test]
fn intervals_add_up_to_the_whole() {
    let cmd = format!("{} --wait syscalls 2000000 1000", workload());
    let (recs, code, _) = trace_to_end(&["hist", "--json", "-i", "0.2", "-c", &cmd]);
    assert_eq!(code, 0);
    let getppid: Vec<_> = recs
        .iter()
        .filter(|r| r["type"] == "hist" && r["syscall"] == "getppid")
        .collect();
    assert!(
        getppid.len() >= 2,
        "expected several intervals: {getppid:?}"
    );
    assert_eq!(total(&recs, "getppid"), 2_000_000);
    assert_eq!(total(&recs, "read"), 1000);
    check_buckets(&recs);
}

#[test]
fn full_store_is_counted_not_fatal() {
    // 64 threads blocked in nanosleep at once, but room for only 4 in-flight syscalls.
    let cmd = format!("{} --wait block 64 300", workload());
    let (recs, code, _) = trace_to_end(&["hist", "--json", "--max-threads", "4", "-c", &cmd]);
    assert_eq!(code, 0);
    let s = summary(&recs);
    assert_eq!(s["store"], "hash");
    let full = s["lost"]["map_full"].as_u64().unwrap();
    let sleeps = total(&recs, "nanosleep");
    assert!(full > 0, "store of 4 must overflow: {s}");
    assert!(sleeps < 64, "not all 64 sleeps fit: {sleeps}");
    // Every sleep is either in the histogram or among the dropped entries.
    assert!(sleeps + full >= 64, "sleeps {sleeps} + dropped {full} < 64");
    check_buckets(&recs);
}

/// The bounded store holds one entry per thread and frees it when the thread ends: 300
/// threads, one after another, fit a store of 8 with nothing dropped or missing.
#[test]
fn ended_threads_free_their_store_entries() {
    let cmd = format!("{} --wait threads 300 10", workload());
    for hook in ["tp_btf", "raw_tp", "tracepoint"] {
        let (recs, code, _) = trace_to_end(&[
            "hist",
            "--json",
            "--max-threads",
            "8",
            "--hook",
            hook,
            "-c",
            &cmd,
        ]);
        assert_eq!(code, 0);
        let s = summary(&recs);
        assert_eq!(s["store"], "hash", "{s}");
        assert_eq!(s["lost"]["map_full"], 0, "[{hook}] {s}");
        // A new thread's return from clone is not a lost entry; only the -c gate's
        // read, in progress when tracing began, may be.
        assert!(s["lost"]["no_entry"].as_u64().unwrap() <= 1, "[{hook}] {s}");
        assert_eq!(total(&recs, "getppid"), 3000, "[{hook}]");
        check_buckets(&recs);
    }
}

#[test]
fn sigterm_prints_final_results() {
    let mut r = Running::start(&["hist", "--json"]);
    let ids = r.wait_attached();
    std::thread::sleep(std::time::Duration::from_millis(300));
    r.signal(libc::SIGTERM);
    let (recs, code, _) = r.finish();
    assert_unloaded(&ids);
    assert_eq!(code, 0);
    assert!(
        !of_type(&recs, "hist").is_empty(),
        "a busy machine makes syscalls"
    );
    assert_eq!(summary(&recs)["end"], "Interrupted");
}

#[test]
fn closed_stdout_ends_quietly() {
    let mut child = Command::new(btrace_bin())
        .args(["hist", "-i", "0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(
        first.starts_with("--- interval 0: 0.000 s to "),
        "{first:?}"
    );
    drop(out);
    let status = child.wait().unwrap();
    assert_ended_quietly(status, &mut child);
}

/// Exit 0 and nothing on stderr but the `Tracing` line.
fn assert_ended_quietly(status: std::process::ExitStatus, child: &mut std::process::Child) {
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "exit {status:?}, stderr {err}");
    assert_eq!(
        err.lines().filter(|l| !l.starts_with("Tracing")).count(),
        0,
        "{err}"
    );
}

/// A trace that has nothing to write yet (no interval, no -d) still notices that its
/// reader has gone, instead of running until someone kills it.
#[test]
fn reader_gone_before_any_output_ends_quietly() {
    let mut child = Command::new(btrace_bin())
        .args(["hist"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("btrace kept running with nobody reading its output");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_ended_quietly(status, &mut child);
}

#[test]
fn bad_input_gives_one_clear_line() {
    let e = one_line_error(&btrace(&["hist", "--syscalls", "getpid,opnat", "-d", "1"]));
    assert!(
        e.contains("unknown syscall 'opnat'") && e.contains("openat"),
        "{e}"
    );

    let e = one_line_error(&btrace(&["hist", "-p", "abc", "-d", "1"]));
    assert!(e.contains("'abc'") && e.contains("--pid"), "{e}");

    let e = one_line_error(&btrace(&["hist", "-p", "999999999", "-d", "1"]));
    assert!(e.contains("no process with pid 999999999"), "{e}");

    let e = one_line_error(&btrace(&["hist", "-c", "/no/such/program", "-d", "1"]));
    assert!(e.contains("command not found"), "{e}");

    let out = Command::new(btrace_bin())
        .args(["hist", "-d", "1"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let e = one_line_error(&out);
    assert!(e.contains("CAP_BPF") && e.contains("root"), "{e}");
}

#[test]
fn kernel_without_btf_is_refused_clearly() {
    // Hide BTF in a private mount namespace, as on a kernel built without it.
    let script = format!(
        "mount -t tmpfs none /sys/kernel/btf && exec {} hist -d 1",
        btrace_bin().display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    let e = one_line_error(&out);
    assert!(
        e.contains("BTF") && e.contains("CONFIG_DEBUG_INFO_BTF"),
        "{e}"
    );
}

use std::os::unix::process::CommandExt;

/// With -i every interval is delimited by an "interval" record (numbered from 0, with its
/// bounds), empty intervals included; every hist record names its interval; "count" is the
/// interval's, "total" the running total since tracing began.
#[test]
fn intervals_are_delimited_and_numbered() {
    let cmd = format!("{} --wait block 1 900", workload());
    let (recs, code, _) = trace_to_end(&["hist", "--json", "-i", "0.2", "-c", &cmd]);
    assert_eq!(code, 0);
    let marks = of_type(&recs, "interval");
    assert!(marks.len() >= 4, "0.9 s in 0.2 s intervals: {marks:?}");
    for (i, m) in marks.iter().enumerate() {
        assert_eq!(m["interval"], i as u64, "{m}");
        assert!(m["end_s"].as_f64() >= m["start_s"].as_f64(), "{m}");
        assert!(m["end_ns"].as_u64() > m["start_ns"].as_u64(), "{m}");
        if i > 0 {
            assert_eq!(m["start_s"], marks[i - 1]["end_s"], "contiguous: {m}");
        }
    }
    assert!(
        marks.iter().any(|m| m["calls"] == 0),
        "a sleeping command leaves empty intervals, still written: {marks:?}"
    );
    // Records follow their interval record and name it.
    let mut current = None;
    for r in &recs {
        match r["type"].as_str() {
            Some("interval") => current = r["interval"].as_u64(),
            Some("hist") => assert_eq!(r["interval"].as_u64(), current, "{r}"),
            _ => {}
        }
    }
    assert_eq!(total(&recs, "nanosleep"), 1);
    let last_total = recs
        .iter()
        .filter(|r| r["syscall"] == "nanosleep")
        .map(|r| r["total"].as_u64().unwrap())
        .max();
    assert_eq!(last_total, Some(1));
}

/// In --json mode stdout is btrace's record stream only: a -c command's own output goes
/// to stderr; with -o the records go to the file and the command keeps stdout.
#[test]
fn json_stream_holds_only_records() {
    // `read` holds the command until the test has seen btrace's programs (it sends "go");
    // with stdin closed (the -o run below) it returns at once.
    let cmd = "sh -c 'read go; echo hello from the command; echo second line'";
    let (recs, code, stderr) = trace_to_end(&["hist", "--json", "-c", cmd]);
    assert_eq!(code, 0);
    assert!(!of_type(&recs, "hist").is_empty());
    assert!(
        stderr.iter().any(|l| l == "hello from the command"),
        "{stderr:?}"
    );
    let file = std::env::temp_dir().join(format!("btrace-o-{}.json", std::process::id()));
    let out = btrace(&["hist", "--json", "-o", file.to_str().unwrap(), "-c", cmd]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the command\nsecond line\n"
    );
    let recs = parse_ndjson(&std::fs::read(&file).unwrap());
    summary(&recs);
    std::fs::remove_file(file).ok();
    let e = one_line_error(&btrace(&["hist", "-o", "/no/such/dir/x", "-d", "1"]));
    assert!(e.contains("/no/such/dir/x"), "{e}");
}

/// Syscalls outside the table (here number 1000, which no kernel has) are counted as
/// "other", never dropped; a syscall named twice is reported once.
#[test]
fn unknown_numbers_and_duplicate_names() {
    let cmd = format!("{} --wait unknown 37", workload());
    let (recs, code, _) = trace_to_end(&["hist", "--json", "-c", &cmd]);
    assert_eq!(code, 0);
    assert_eq!(total(&recs, "other"), 37, "{recs:?}");
    let cmd = format!("{} --wait syscalls 20 10", workload());
    let (recs, _, _) = trace_to_end(&[
        "hist",
        "--json",
        "--syscalls",
        "read,getppid,read",
        "-c",
        &cmd,
    ]);
    let names: Vec<_> = of_type(&recs, "hist")
        .iter()
        .map(|r| r["syscall"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["getppid", "read"]);
}

/// Between the start gate and execve the child makes no syscall btrace would count as the
/// command's (the gate closes on exec): the workload itself never calls close.
#[test]
fn the_gate_is_not_the_commands_work() {
    let cmd = format!("{} --wait syscalls 20 10", workload());
    let (recs, _, _) = trace_to_end(&["hist", "--json", "-c", &cmd]);
    assert_eq!(total(&recs, "close"), 0, "{recs:?}");
    assert_eq!(total(&recs, "execve"), 1, "{recs:?}");
}

/// Only commands that aggregate take -i; absurd durations are refused in one line.
#[test]
fn flags_a_command_does_not_take_are_not_offered() {
    for cmd in ["tcp", "tracepoint", "usdt"] {
        let help = btrace(&[cmd, "--help"]);
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(!text.contains("--interval"), "{cmd} --help:\n{text}");
        assert!(text.contains("--output"), "{cmd} --help:\n{text}");
    }
    // kprobe and uprobe aggregate with --hist (and uprobe with --count).
    for cmd in ["hist", "kprobe", "uprobe"] {
        let help = btrace(&[cmd, "--help"]);
        assert!(String::from_utf8_lossy(&help.stdout).contains("--interval"));
    }
    for bad in ["1e19", "1e300", "inf"] {
        let out = btrace(&["hist", "-d", bad]);
        let e = one_line_error(&out);
        assert_eq!(out.status.code(), Some(2), "{e}");
        assert!(!e.contains("panicked"), "{e}");
    }
    let e = one_line_error(&btrace(&["tcp", "-i", "1"]));
    assert!(e.contains("'-i'"), "{e}");
}

/// The hist_by records of one syscall, per key (pid or tid), and its "other" row's count.
fn by_counts(records: &[Value], name: &str, key: &str) -> (Vec<(u64, u64)>, u64) {
    let mut keyed = Vec::new();
    let mut other = 0;
    for r in of_type(records, "hist_by") {
        if r["syscall"] != name {
            continue;
        }
        if r["other"] == true {
            other += r["count"].as_u64().unwrap();
        } else {
            keyed.push((r[key].as_u64().unwrap(), r["count"].as_u64().unwrap()));
        }
    }
    keyed.sort_by_key(|k| k.1);
    (keyed, other)
}

#[test]
fn by_process_gives_exact_per_process_totals() {
    let w = workload();
    let cmd = format!("sh -c '{w} --wait syscalls 300 0 & {w} --wait syscalls 700 0; wait'");
    let (recs, code, _) = trace_to_end(&["hist", "--json", "--by", "process", "-c", &cmd]);
    assert_eq!(code, 0);
    let (keyed, other) = by_counts(&recs, "getppid", "pid");
    assert_eq!(other, 0, "{recs:#?}");
    // The shell asks for its parent's pid too: the workloads' rows are the ones named so.
    let work: Vec<u64> = of_type(&recs, "hist_by")
        .into_iter()
        .filter(|r| r["syscall"] == "getppid" && r["comm"] == "workload")
        .map(|r| r["count"].as_u64().unwrap())
        .collect();
    let mut work = work;
    work.sort();
    assert_eq!(work, vec![300, 700], "{keyed:?}");
    let listed: u64 = keyed.iter().map(|k| k.1).sum();
    assert_eq!(listed, total(&recs, "getppid"), "{keyed:?}");
    for r in of_type(&recs, "hist_by") {
        assert_eq!(r["by"], "process");
        for p in ["p50_us", "p90_us", "p99_us"] {
            assert!(r[p].as_u64().is_some(), "{p} in {r}");
        }
    }
}

#[test]
fn by_thread_with_few_keys_sums_the_rest_in_other() {
    let w = workload();
    // 4 threads of 200 getppid each; room for 2 (thread, syscall) pairs only.
    let cmd = format!("{w} --wait threads 4 200");
    let (recs, code, _) = trace_to_end(&[
        "hist",
        "--json",
        "--by",
        "thread",
        "--max-keys",
        "2",
        "-c",
        &cmd,
    ]);
    assert_eq!(code, 0);
    let (keyed, other) = by_counts(&recs, "getppid", "tid");
    let listed: u64 = keyed.iter().map(|k| k.1).sum();
    assert!(keyed.len() <= 2, "{keyed:?}");
    assert!(keyed.iter().all(|k| k.1 == 200), "{keyed:?}");
    assert_eq!(listed + other, 800, "{keyed:?} + {other}");
    assert!(other >= 400);
    assert_eq!(total(&recs, "getppid"), 800);
}

#[test]
fn errors_and_errno_keep_only_failed_calls() {
    let w = workload();
    let cmd = format!("{w} --wait fails 40");
    let (recs, code, _) = trace_to_end(&["hist", "--json", "--errors", "-c", &cmd]);
    assert_eq!(code, 0);
    assert_eq!(total(&recs, "read"), 40, "{recs:#?}");
    assert_eq!(total(&recs, "openat"), 40, "{recs:#?}");
    assert_eq!(total(&recs, "getppid"), 0, "{recs:#?}");

    let (recs, code, _) = trace_to_end(&["hist", "--json", "--errno", "EBADF", "-c", &cmd]);
    assert_eq!(code, 0);
    assert_eq!(total(&recs, "read"), 40, "{recs:#?}");
    let hists = of_type(&recs, "hist");
    assert_eq!(hists.len(), 1, "{hists:#?}");

    let out = btrace(&["hist", "--errno", "ENOTANERRNO", "-d", "1"]);
    let err = one_line_error(&out);
    assert!(err.contains("ENOTANERRNO"), "{err}");
}

#[test]
fn by_cgroup_gives_exact_totals_of_a_cgroup_made_by_the_test() {
    let root = btrace::core::scope::cgroup2_mount().expect("cgroup v2 mounted");
    let cg = root.join(format!("btrace-hist-by-{}", std::process::id()));
    std::fs::create_dir_all(&cg).unwrap();
    let w = workload();
    // The shell moves itself into the cgroup, then becomes the workload.
    let cmd = format!(
        "sh -c 'echo $$ > {}/cgroup.procs && exec {w} --wait syscalls 250 0'",
        cg.display()
    );
    let (recs, code, _) = trace_to_end(&[
        "hist",
        "--json",
        "--by",
        "cgroup",
        "--syscalls",
        "getppid",
        "-c",
        &cmd,
    ]);
    let rel = format!("/{}", cg.strip_prefix(&root).unwrap().display());
    for _ in 0..50 {
        if std::fs::remove_dir(&cg).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(code, 0);
    let rows: Vec<_> = of_type(&recs, "hist_by")
        .into_iter()
        .filter(|r| r["cgroup"] == rel.as_str())
        .collect();
    assert_eq!(rows.len(), 1, "{recs:#?}");
    assert_eq!(rows[0]["by"], "cgroup");
    assert_eq!(rows[0]["count"], 250, "{}", rows[0]);
    assert!(rows[0]["cgroup_id"].as_u64().unwrap() > 1);
}

/// A process renamed to an escape sequence and a newline: its per-process histogram's
/// label is shown escaped in text; JSON carries the name as it is.
#[test]
fn a_hostile_process_name_is_escaped_in_per_process_text() {
    let cmd = hostile_cmd("open", "/etc/hostname");
    let out = btrace(&["hist", "--by", "process", "-c", &cmd]);
    assert!(out.status.success());
    assert_name_escaped(&out);
    let out = btrace(&["hist", "--by", "process", "--json", "-c", &cmd]);
    let recs = parse_ndjson(&out.stdout);
    assert!(recs.iter().any(|r| r["comm"] == HOSTILE_NAME), "{recs:?}");
}
