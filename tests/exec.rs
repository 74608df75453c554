// SPDX-License-Identifier: Apache-2.0
//! `btrace exec` against the real kernel: a workload that execs a known set of programs
//! (one failing, one with more arguments than kept, one with an over-long argument, one
//! from a non-leader thread).

mod common;

use common::*;
use serde_json::Value;

fn argv(r: &Value) -> Vec<String> {
    r["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn exactly_the_execs_of_a_command_with_arguments_failures_and_truncation() {
    let w = workload();
    let cmd = format!("{w} --wait exec-set");
    let (recs, code, _) = trace_to_end(&["exec", "--json", "-c", &cmd]);
    assert_eq!(code, 0);
    let ev = of_type(&recs, "exec");
    // The command itself, then its five children's execs.
    assert_eq!(ev.len(), 6, "{ev:#?}");
    let root = ev[0];
    assert_eq!(root["filename"], w.as_str());
    assert_eq!(argv(root), strs(&[&w, "--wait", "exec-set"]));
    assert_eq!(root["ret"], 0);
    let root_pid = root["pid"].as_u64().unwrap();
    let kids = &ev[1..];
    for k in kids {
        assert_eq!(k["ppid"].as_u64().unwrap(), root_pid, "{k}");
        assert_eq!(k["call"], "execve");
        assert_eq!(
            k["parent_cmdline"],
            serde_json::json!([w, "--wait", "exec-set"]),
            "{k}"
        );
    }
    assert_eq!(argv(kids[0]), strs(&["workload", "noop", "one", "two"]));
    assert_eq!(kids[0]["filename"], "/proc/self/exe");
    assert_eq!(kids[0]["ret"], 0);
    assert!(kids[0].get("truncated").is_none(), "{}", kids[0]);

    assert_eq!(kids[1]["filename"], "/nonexistent-btrace/prog");
    assert_eq!(argv(kids[1]), strs(&["/nonexistent-btrace/prog", "x"]));
    assert_eq!(kids[1]["ret"], -2);
    assert_eq!(kids[1]["errno"], "ENOENT");

    // 25 arguments: the first 20 kept, the list marked truncated.
    let many = argv(kids[2]);
    let mut want = strs(&["workload", "noop"]);
    want.extend((1..=18).map(|i| format!("a{i}")));
    assert_eq!(many, want);
    assert_eq!(kids[2]["truncated"], serde_json::json!(["argv"]));

    // One argument of 300 'L's: cut, and that argument marked.
    let long = argv(kids[3]);
    assert_eq!(long.len(), 3);
    assert!(
        long[2].len() < 300 && long[2].len() >= 100,
        "{}",
        long[2].len()
    );
    assert!(long[2].bytes().all(|b| b == b'L'));
    assert_eq!(kids[3]["truncated"], serde_json::json!(["argv[2]"]));

    // The exec from a second thread: the thread becomes the process's leader.
    assert_eq!(argv(kids[4]), strs(&["workload", "noop", "from-thread"]));
    assert_eq!(kids[4]["ret"], 0);
    assert_eq!(kids[4]["pid"], kids[4]["tid"]);

    let s = summary(&recs);
    assert_eq!(s["events"], 6);
    assert_eq!(s["lost"]["ringbuf"], 0);
    assert_eq!(s["lost"]["map_full"], 0);
}

#[test]
fn fails_keeps_only_the_failed_exec() {
    let w = workload();
    let cmd = format!("{w} --wait exec-set");
    let (recs, code, _) = trace_to_end(&["exec", "--json", "--fails", "-c", &cmd]);
    assert_eq!(code, 0);
    let ev = of_type(&recs, "exec");
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0]["filename"], "/nonexistent-btrace/prog");
    assert_eq!(ev[0]["errno"], "ENOENT");
}

#[test]
fn text_output_shows_the_failure_by_name() {
    let w = workload();
    let cmd = format!("{w} --wait exec-set");
    let out = btrace(&["exec", "-c", &cmd]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("execve")).collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(lines
        .iter()
        .any(|l| l.contains("/nonexistent-btrace/prog") && l.contains("ENOENT")));
}

#[test]
fn raw_tp_hook_gives_the_same_execs() {
    let w = workload();
    let cmd = format!("{w} --wait exec-set");
    let (recs, code, _) = trace_to_end(&["exec", "--json", "--hook", "raw_tp", "-c", &cmd]);
    assert_eq!(code, 0);
    assert_eq!(summary(&recs)["hook"], "raw_tp");
    let ev = of_type(&recs, "exec");
    assert_eq!(ev.len(), 6, "{ev:#?}");
    assert_eq!(ev[2]["errno"], "ENOENT");
    assert_eq!(ev[3]["truncated"], serde_json::json!(["argv"]));
    assert_eq!(
        argv(ev[5]),
        strs(&["workload", "noop", "from-thread"]),
        "{ev:#?}"
    );
}

/// An exec dropped because the in-flight store is full is one loss, counted once: as
/// `map_full`, not again as an exit without an entry. 12 threads sit inside execve at
/// once (held on a userfaultfd page) with room for 4: 4 recorded, 8 lost.
#[test]
fn a_dropped_exec_is_counted_once() {
    let cmd = format!("{} --wait exec-held 12", workload());
    let (recs, code, _) = trace_to_end(&["exec", "--json", "--max-inflight", "4", "-c", &cmd]);
    assert_eq!(code, 0);
    let held = of_type(&recs, "exec")
        .into_iter()
        .filter(|e| e["filename"] == "")
        .count();
    assert_eq!(held, 4, "{recs:?}");
    let s = summary(&recs);
    assert_eq!(s["lost"]["map_full"], 8, "{s}");
    assert_eq!(s["lost"]["no_entry"], 0, "{s}");
}
