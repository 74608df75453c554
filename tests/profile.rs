// SPDX-License-Identifier: Apache-2.0
//! `btrace profile` against the real kernel: a one-thread CPU burner spending 70 % of its
//! CPU time in burn_hot and 30 % in burn_cold (tests/workload/stackload.c, frame pointers
//! and debug info), a process that exits (and deletes its executable) during the run,
//! folded stacks read back, and the SVG flame graph rendered by headless Chromium.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

fn tmp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("btrace-prof-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs btrace with STACKLOAD_CPU_FILE set (the workload writes its CPU time there).
fn run_with_cpu_file(args: &[&str], cpu_file: &std::path::Path) -> std::process::Output {
    Command::new(btrace_bin())
        .args(args)
        .env("STACKLOAD_CPU_FILE", cpu_file)
        .stdin(Stdio::null())
        .output()
        .expect("running btrace")
}

fn cpu_seconds(f: &std::path::Path) -> f64 {
    let ns: u64 = std::fs::read_to_string(f).unwrap().trim().parse().unwrap();
    ns as f64 / 1e9
}

/// One run of the burner under `profile -F hz`: Err says what was off.
fn split_once(hz: u64) -> Result<(), String> {
    let d = tmp(&format!("split{hz}"));
    let cpu = d.join("cpu");
    let cmd = format!("{} burn 3000", stackload());
    let hz_s = hz.to_string();
    let out = run_with_cpu_file(&["profile", "--json", "-F", &hz_s, "-c", &cmd], &cpu);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = parse_ndjson(&out.stdout);
    let stacks: Vec<&Value> = of_type(&recs, "stack")
        .into_iter()
        .filter(|r| r["comm"] == "stackload")
        .collect();
    assert!(!stacks.is_empty(), "{recs:?}");
    let sum = |f: &dyn Fn(&Value) -> bool| -> u64 {
        stacks
            .iter()
            .filter(|r| f(r))
            .map(|r| r["samples"].as_u64().unwrap())
            .sum()
    };
    let total = sum(&|_| true);
    let hot = sum(&|r| stack_has(r, "user_stack", "burn_hot"));
    let cold = sum(&|r| stack_has(r, "user_stack", "burn_cold"));
    let expected = hz as f64 * cpu_seconds(&cpu);
    let (h, c) = (hot as f64 / total as f64, cold as f64 / total as f64);
    eprintln!(
        "-F {hz}: {total} samples (expected {expected:.0}), burn_hot {h:.3}, burn_cold {c:.3}"
    );
    // the inlined hot_step is named inside burn_hot
    assert!(stacks
        .iter()
        .any(|r| stack_has(r, "user_stack", "hot_step") && stack_has(r, "user_stack", "burn_hot")));
    let s = summary(&recs);
    assert_eq!(s["event"], "cpu-clock");
    assert_eq!(s["frequency_hz"], hz);
    assert_eq!(s["lost"]["map_full"], 0);
    assert_eq!(s["stack_losses"]["map_full"], 0);
    // The workload has frame pointers: its stacks walk out to the entry point. A sample
    // in the loader or libc's start-up (built without them) may be cut (1 seen in CI).
    let reaches_start = |r: &&&Value| {
        stack_has(r, "user_stack", "_start")
            || stack_has(r, "user_stack", "__libc_start_main")
            || stack_has(r, "user_stack", "__libc_start_call_main")
    };
    let burning: Vec<&&Value> = stacks
        .iter()
        .filter(|r| {
            stack_has(r, "user_stack", "burn_hot") || stack_has(r, "user_stack", "burn_cold")
        })
        .collect();
    assert!(burning.iter().all(reaches_start), "{burning:?}");
    let cut = s["stack_losses"]["user_truncated"].as_u64().unwrap();
    assert!(cut * 50 <= total, "{cut} cut user stacks of {total}");
    assert!(s["samples"].as_u64().unwrap() >= total);
    if (total as f64 - expected).abs() > expected * 0.10 {
        return Err(format!("{total} samples, want {expected:.0} ± 10 %"));
    }
    if !(0.60..=0.80).contains(&h) {
        return Err(format!("burn_hot {h:.3}, want 0.70 ± 0.10"));
    }
    if !(0.20..=0.40).contains(&c) {
        return Err(format!("burn_cold {c:.3}, want 0.30 ± 0.10"));
    }
    Ok(())
}

/// The split and the count, up to three tries: this VM's vCPUs are descheduled by the
/// host under load (other VMs), and the timer samples due meanwhile are lost while the
/// task's CPU clock runs on (the guest sees no steal time), so a busy host can cost a
/// run 20 % of its samples.
fn split_at(hz: u64) {
    let mut errs = Vec::new();
    for _ in 0..3 {
        match split_once(hz) {
            Ok(()) => return,
            Err(e) => errs.push(e),
        }
    }
    panic!("-F {hz}, three runs: {errs:?}");
}

#[test]
fn seventy_thirty_split_and_sample_count_at_99_hz() {
    split_at(99);
}

#[test]
fn seventy_thirty_split_and_sample_count_at_49_hz() {
    split_at(49);
}

#[test]
fn a_process_that_exits_during_the_run_is_symbolized() {
    let d = tmp("exit");
    // A copy that deletes itself, burns 600 ms and exits; its parent then lives 1.5 s more.
    let exe = d.join("sl-exiting");
    std::fs::copy(stackload(), &exe).unwrap();
    let cmd = format!("{} spawn-exit {} 600 1500", stackload(), exe.display());
    let out = btrace(&["profile", "--json", "-F", "99", "-c", &cmd]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!exe.exists(), "the child deleted its executable");
    let recs = parse_ndjson(&out.stdout);
    let mine: Vec<&Value> = of_type(&recs, "stack")
        .into_iter()
        .filter(|r| r["comm"] == "sl-exiting")
        .collect();
    let total: u64 = mine.iter().map(|r| r["samples"].as_u64().unwrap()).sum();
    let named: u64 = mine
        .iter()
        .filter(|r| stack_has(r, "user_stack", "exiting_burn"))
        .map(|r| r["samples"].as_u64().unwrap())
        .sum();
    assert!(
        total >= 45,
        "{total} samples of the exiting process, want about 59"
    );
    assert!(
        named as f64 >= 0.9 * total as f64,
        "{named} of {total} samples name exiting_burn: {mine:?}"
    );
}

#[test]
fn folded_output_parses_back_to_the_same_totals() {
    let cmd = format!("{} burn 800", stackload());
    let json = btrace(&["profile", "--json", "-F", "199", "-c", &cmd]);
    assert!(json.status.success());
    let folded = btrace(&["profile", "--folded", "-F", "199", "-c", &cmd]);
    assert!(folded.status.success());
    let text = String::from_utf8(folded.stdout).unwrap();
    // stdout holds folded lines only (the summary is on stderr)
    let mut by_root: HashMap<String, u64> = HashMap::new();
    let mut total = 0;
    for l in text.lines() {
        let (frames, n) = l
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not folded: {l:?}"));
        let n: u64 = n.parse().unwrap_or_else(|_| panic!("not folded: {l:?}"));
        let comm = frames.split(';').next().unwrap();
        assert!(!comm.is_empty());
        *by_root.entry(comm.to_string()).or_default() += n;
        total += n;
    }
    let err = String::from_utf8_lossy(&folded.stderr);
    let summary = err
        .lines()
        .find(|l| l.starts_with("Traced CPU samples"))
        .unwrap_or_else(|| panic!("no summary on stderr: {err}"));
    assert!(
        summary.contains(&format!(": {total} samples")),
        "folded lines sum to {total}; {summary}"
    );
    // Same totals in JSON as in folded form (same run shape: the burner at 199 Hz).
    let recs = parse_ndjson(&json.stdout);
    let s = summary_of(&recs);
    let json_total: u64 = of_type(&recs, "stack")
        .iter()
        .map(|r| r["samples"].as_u64().unwrap())
        .sum();
    assert_eq!(s["samples"].as_u64().unwrap(), json_total);
    let sl = by_root["stackload"] as f64;
    assert!(
        (sl - 159.0).abs() < 40.0,
        "stackload {sl} samples at 199 Hz x 0.8 s"
    );
}

fn summary_of(recs: &[Value]) -> &Value {
    summary(recs)
}

/// (name, width in %) of every frame box in a rendered flame graph's DOM.
fn boxes(dom: &str) -> Vec<(String, f64)> {
    let mut v = Vec::new();
    for part in dom.split("<title>").skip(1) {
        let Some((title, rest)) = part.split_once("</title>") else {
            continue;
        };
        let Some(rect) = rest.split_once("<rect").map(|(_, r)| r) else {
            continue;
        };
        let Some(w) = rect
            .split_once("width=\"")
            .and_then(|(_, w)| w.split_once('"'))
            .and_then(|(w, _)| w.trim_end_matches('%').parse::<f64>().ok())
        else {
            continue;
        };
        let name = title
            .rsplit_once(" (")
            .map_or(title, |(n, _)| n)
            .to_string();
        v.push((name, w));
    }
    v
}

#[test]
fn svg_flame_graph_renders_in_chromium_with_the_hot_function_widest() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium is needed (Debian package chromium; `make deps` installs it)");
    let d = tmp("svg");
    let svg = d.join("cpu.svg");
    let cmd = format!("{} burn 2000", stackload());
    let out = btrace(&[
        "profile",
        "-F",
        "99",
        "--svg",
        svg.to_str().unwrap(),
        "-c",
        &cmd,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            &format!("file://{}", svg.display()),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("running chromium");
    assert!(rendered.status.success());
    let dom = String::from_utf8_lossy(&rendered.stdout);
    assert!(dom.contains("<svg"), "no SVG in the DOM: {dom:.300}");
    let b = boxes(&dom);
    let width = |n: &str| {
        b.iter()
            .filter(|(name, _)| name == n)
            .map(|(_, w)| *w)
            .fold(0.0, f64::max)
    };
    let (hot, cold) = (width("burn_hot"), width("burn_cold"));
    // Every box but the common path to the burner (all, stackload, the start-up frames,
    // main, do_burn) is narrower than burn_hot's.
    let common = [
        "all",
        "stackload",
        "__libc_start_call_main",
        "main",
        "do_burn",
    ];
    let (other_name, widest_other) = b
        .iter()
        .filter(|(n, _)| !common.contains(&n.as_str()) && n != "burn_hot")
        .fold((String::new(), 0.0), |best, (n, w)| {
            if *w > best.1 {
                (n.clone(), *w)
            } else {
                best
            }
        });
    eprintln!("burn_hot {hot} %, burn_cold {cold} %, widest other {other_name} {widest_other} %");
    assert!((55.0..=85.0).contains(&hot), "burn_hot box {hot} % wide");
    // A frame on exactly burn_hot's stacks (one it always calls, or a kernel frame every
    // one of its samples interrupted) is as wide; none may be wider.
    assert!(
        hot >= widest_other,
        "burn_hot {hot} % is not the widest: {other_name} {widest_other} %"
    );
    assert!(cold > 15.0, "burn_cold box {cold} % wide");
}

/// A process renamed to an escape sequence and a newline: shown escaped in the text
/// report and in folded stacks; JSON carries the name as it is.
#[test]
fn a_hostile_process_name_is_escaped_in_text_and_folded() {
    let cmd = hostile_cmd("burn", "300");
    for args in [
        &["profile", "-F", "499", "-c", &cmd][..],
        &["profile", "-F", "499", "--folded", "-c", &cmd],
    ] {
        let out = btrace(args);
        assert!(out.status.success(), "{args:?}");
        assert_name_escaped(&out);
    }
    let out = btrace(&["profile", "-F", "499", "--json", "-c", &cmd]);
    let recs = parse_ndjson(&out.stdout);
    assert!(
        recs.iter()
            .any(|r| r["type"] == "stack" && r["comm"] == HOSTILE_NAME),
        "{recs:?}"
    );
}

/// --max-stacks 1048576 would take over 1 GB of kernel memory (1 KB per stack): refused
/// before anything is loaded, with the flag and a value that fits.
#[test]
fn max_stacks_beyond_the_memory_limit_refused() {
    let e = one_line_error(&btrace(&["profile", "--max-stacks", "1048576", "-d", "1"]));
    assert!(!e.contains("Tracing"), "{e}");
    assert!(e.contains("above the limit of"), "{e}");
    assert!(e.contains("--max-stacks 1048576 (maps stacks*"), "{e}");
    assert!(e.contains("give --max-stacks 262144 or less"), "{e}");
}

/// The fork storm of the draining tests: 600 short processes, two at a time, each
/// burning 3 ms on a stack of its own depth (stackload storm).
fn storm_cmd() -> String {
    format!("{} storm 600 3 0", stackload())
}

fn stack_records(recs: &[Value]) -> Vec<&Value> {
    of_type(recs, "stack")
}

#[test]
fn a_fork_storm_against_a_tiny_table_loses_nothing() {
    storm_against_a_tiny_table(false);
}

#[test]
fn a_fork_storm_against_a_tiny_table_loses_nothing_drained_key_by_key() {
    // The drain of kernels without BPF_MAP_LOOKUP_AND_DELETE_BATCH (testing builds).
    storm_against_a_tiny_table(true);
}

fn storm_against_a_tiny_table(key_by_key: bool) {
    // Counts buffers of 256 entries, stack tables of 256: the storm makes well over 512
    // distinct (thread, stacks) entries, so only draining while running keeps them all.
    let cmd = storm_cmd();
    let mut run = Command::new(btrace_bin());
    run.args([
        "profile",
        "--json",
        "-F",
        "999",
        "--max-counts",
        "256",
        "--max-stacks",
        "256",
        "-c",
        &cmd,
    ])
    .stdin(Stdio::null());
    if key_by_key {
        run.env("BTRACE_TEST_NO_BATCH", "1");
    }
    let out = run.output().expect("running btrace");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = parse_ndjson(&out.stdout);
    let s = summary(&recs);
    let stacks = stack_records(&recs);
    let kept: u64 = stacks.iter().map(|r| r["samples"].as_u64().unwrap()).sum();
    eprintln!(
        "{} entries, {kept} samples, {} drains",
        stacks.len(),
        s["drains"]
    );
    assert!(
        stacks.len() > 512,
        "{} entries: not enough to overflow both buffers",
        stacks.len()
    );
    assert_eq!(s["lost"]["map_full"], 0, "{s}");
    assert_eq!(s["stack_losses"]["map_full"], 0, "{s}");
    assert_eq!(s["samples"].as_u64().unwrap(), kept, "{s}");
    assert_eq!(
        s["samples_seen"].as_u64().unwrap(),
        kept,
        "every sample the kernel saw is kept: {s}"
    );
    assert!(s["drains"].as_u64().unwrap() >= 3, "{s}");
    // The children's burns are on their own stacks.
    let children = stacks
        .iter()
        .filter(|r| {
            stack_has(r, "user_stack", "storm_descend") && stack_has(r, "user_stack", "burn_hot")
        })
        .count();
    assert!(children > 100, "{children} entries of the children's burns");
    assert_storm_named(&stacks);
}

/// Each child of a storm is named although it ended long before the report: its stacks
/// were symbolized before its maps were let go (the sweep waits for both buffers to be
/// drained after a process ends). A child that ends before its maps are read may stay
/// unknown: at most 2 % of the storm's samples.
fn assert_storm_named(stacks: &[&Value]) {
    let samples_of = |r: &&Value| r["samples"].as_u64().unwrap();
    let storm: Vec<&Value> = stacks
        .iter()
        .copied()
        .filter(|r| r["comm"] == "stackload")
        .collect();
    let all: u64 = storm.iter().map(samples_of).sum();
    let unnamed: u64 = storm
        .iter()
        .filter(|r| r["user_stack"][0]["name"].is_null())
        .map(samples_of)
        .sum();
    assert!(all > 0, "no sample of the storm");
    assert!(
        unnamed * 50 <= all,
        "{unnamed} of {all} samples of the storm with an unnamed innermost user frame"
    );
}

/// Short processes with the default tables (drained once a second): each one's stacks
/// are named at the end although it is long gone. (With the sweep symbolizing after one
/// drain instead of two, a review run on a heavily loaded machine saw 18 % of these
/// samples `[unknown]`: the buffer active when a child ended is read only by the second
/// drain after. Quiet runs did not show it, so this guards rather than reproduces.)
#[test]
fn short_processes_are_named_after_they_ended() {
    let cmd = format!("{} storm 300 30 0", stackload());
    let out = btrace(&["profile", "--json", "-F", "999", "-c", &cmd]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = parse_ndjson(&out.stdout);
    assert_storm_named(&stack_records(&recs));
}

#[test]
fn a_table_that_fills_says_how_much_was_kept_and_percentages_count_the_lost() {
    // The control of the test above: the same storm without draining fills the table,
    // and the report says so (N of M samples kept; percentages of M).
    let cmd = storm_cmd();
    let json = btrace(&[
        "profile",
        "--json",
        "-F",
        "999",
        "--max-counts",
        "256",
        "--no-drain",
        "-c",
        &cmd,
    ]);
    assert!(json.status.success());
    let recs = parse_ndjson(&json.stdout);
    let s = summary(&recs);
    let lost = s["lost"]["map_full"].as_u64().unwrap();
    let seen = s["samples_seen"].as_u64().unwrap();
    let kept = s["samples"].as_u64().unwrap();
    assert!(lost > 0, "the 256-entry table did not fill: {s}");
    assert_eq!(kept + lost, seen, "{s}");
    let text = btrace(&[
        "profile",
        "-F",
        "999",
        "--max-counts",
        "256",
        "--no-drain",
        "-c",
        &cmd,
    ]);
    assert!(text.status.success());
    let t = String::from_utf8_lossy(&text.stdout);
    let head = t
        .lines()
        .find(|l| l.contains("samples kept"))
        .unwrap_or_else(|| panic!("no 'N of M samples kept' line: {t}"));
    let words: Vec<&str> = head.split_whitespace().collect();
    assert_eq!(words[1], "of", "{head}");
    let (k, m): (u64, u64) = (words[0].parse().unwrap(), words[2].parse().unwrap());
    assert!(k < m, "{head}");
    assert!(
        head.contains(&format!("percentages are of all {m} samples")),
        "{head}"
    );
    // The first stack's percentage is of M, not of the kept samples.
    let top = t
        .lines()
        .find(|l| l.starts_with("@["))
        .unwrap_or_else(|| panic!("no stack: {t}"));
    let n: f64 = top
        .split("] ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let pct: f64 = top
        .rsplit_once('(')
        .unwrap()
        .1
        .trim_end_matches(" %)")
        .parse()
        .unwrap();
    assert!(
        (pct - 100.0 * n / m as f64).abs() < 0.06,
        "{top}: not a percentage of {m}"
    );
}

#[test]
fn stacks_lost_to_a_full_stack_table_are_counted_one_by_one() {
    // A stack table of 16 entries, never drained: the storm's stacks overflow it, and
    // each walk that found no room is counted (the sample is kept, its stack marked).
    let cmd = storm_cmd();
    let out = btrace(&[
        "profile",
        "--json",
        "-F",
        "999",
        "--max-stacks",
        "16",
        "--no-drain",
        "-c",
        &cmd,
    ]);
    assert!(out.status.success());
    let recs = parse_ndjson(&out.stdout);
    let s = summary(&recs);
    let counted = s["stack_losses"]["map_full"].as_u64().unwrap();
    let marked: u64 = stack_records(&recs)
        .iter()
        .map(|r| {
            let n = r["samples"].as_u64().unwrap();
            let lost = |side: &str| (r[side]["lost"] == "stack table full") as u64;
            n * (lost("kernel_stack") + lost("user_stack"))
        })
        .sum();
    assert!(counted > 0, "{s}");
    assert_eq!(counted, marked, "{s}");
    assert_eq!(s["stack_losses"]["collision"], 0, "{s}");
    assert_eq!(s["lost"]["map_full"], 0, "{s}");
    let text = btrace(&[
        "profile",
        "-F",
        "999",
        "--max-stacks",
        "16",
        "--no-drain",
        "-c",
        &cmd,
    ]);
    let t = String::from_utf8_lossy(&text.stdout);
    assert!(t.contains("(stack table full)"), "{t}");
}
