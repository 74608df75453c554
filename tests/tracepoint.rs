//! `btrace tracepoint` against the real kernel: a workload opening exactly K uniquely
//! named files, decoded from the tracepoint's format.

mod common;

use common::*;
use serde_json::Value;

fn tmpdir(tag: &str) -> String {
    let d = std::env::temp_dir().join(format!("btrace-tp-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.to_string_lossy().into_owned()
}

fn events(recs: &[Value]) -> Vec<&Value> {
    of_type(recs, "event")
}

#[test]
fn exactly_k_openat_events_with_filenames() {
    const K: usize = 7;
    let dir = tmpdir("openat");
    let cmd = format!("{} --wait open {dir} {K}", workload());
    let (recs, code, _) = trace_to_end(&[
        "tracepoint",
        "--json",
        "syscalls:sys_enter_openat",
        "-c",
        &cmd,
    ]);
    assert_eq!(code, 0);
    let evs = events(&recs);
    assert_eq!(evs.len(), K, "{recs:?}");
    let pid = evs[0]["pid"].as_u64().unwrap();
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e["tracepoint"], "syscalls:sys_enter_openat");
        assert_eq!(e["comm"], "workload");
        assert_eq!(e["pid"].as_u64().unwrap(), pid);
        assert_eq!(e["tid"].as_u64().unwrap(), pid, "single-threaded workload");
        assert_eq!(e["args"]["dfd"], -100, "AT_FDCWD decoded as a signed int");
        assert_eq!(
            e["args"]["filename"],
            format!("{dir}/btrace-{K}-{pid}-{i}"),
            "filename read from user memory"
        );
        assert_eq!(
            e["args"]["flags"].as_u64().unwrap() & 0o100,
            0o100,
            "O_CREAT"
        );
        assert_eq!(e["args"]["mode"], 0o600);
        assert!(e["ts_ns"].as_u64().unwrap() > 0);
    }
    let ts: Vec<u64> = evs.iter().map(|e| e["ts_ns"].as_u64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "events in time order");
    let s = summary(&recs);
    assert_eq!(s["events"], K as u64);
    assert_eq!(s["lost"]["ringbuf"], 0);
    assert_eq!(s["tracepoint"], "syscalls:sys_enter_openat");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn comm_and_tid_filters() {
    let dir = tmpdir("filters");
    let cmd = format!("{} --wait open {dir} 4", workload());
    let count = |extra: &[&str]| {
        let mut args = vec![
            "tracepoint",
            "--json",
            "syscalls:sys_enter_openat",
            "-c",
            &cmd,
        ];
        args.extend_from_slice(extra);
        let (recs, code, _) = trace_to_end(&args);
        assert_eq!(code, 0);
        events(&recs).len()
    };
    assert_eq!(count(&["--comm", "workload"]), 4);
    assert_eq!(count(&["--comm", "not-the-workload"]), 0);
    // pid 1's main thread is never the -c child.
    assert_eq!(count(&["--tid", "1"]), 0);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn data_loc_string_of_exec() {
    let w = workload();
    let cmd = format!("{w} --wait open /nonexistent-dir 0");
    let (recs, code, _) = trace_to_end(&[
        "tracepoint",
        "--json",
        "sched:sched_process_exec",
        "-c",
        &cmd,
    ]);
    assert_eq!(code, 0);
    let evs = events(&recs);
    assert_eq!(evs.len(), 1, "{recs:?}");
    assert_eq!(
        evs[0]["args"]["filename"],
        w.as_str(),
        "__data_loc char[] decoded"
    );
    assert_eq!(evs[0]["args"]["pid"], evs[0]["pid"]);
}

#[test]
fn text_mode_lines() {
    let dir = tmpdir("text");
    let cmd = format!("{} --wait open {dir} 3", workload());
    let mut r = Running::start(&["tracepoint", "syscalls:sys_enter_openat", "-c", &cmd]);
    let ids = r.wait_attached();
    r.send_line("go");
    r.stdin.take();
    let mut out = String::new();
    std::io::Read::read_to_string(r.child.stdout.as_mut().unwrap(), &mut out).unwrap();
    r.child.wait().unwrap();
    assert_unloaded(&ids);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("TIME(s)"), "{out}");
    let ev: Vec<&&str> = lines
        .iter()
        .filter(|l| !l.starts_with("Traced") && l.contains(" syscalls:sys_enter_openat "))
        .collect();
    assert_eq!(ev.len(), 3, "{out}");
    assert!(ev[0].contains("dfd=-100 filename=\""), "{out}");
    assert!(
        lines.last().unwrap().contains("3 events. Lost: 0 events"),
        "{out}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_names_get_one_line() {
    let e = one_line_error(&btrace(&["tracepoint", "sched:sched_swich"]));
    assert!(
        e.contains("unknown tracepoint 'sched:sched_swich'") && e.contains("sched:sched_switch"),
        "{e}"
    );
    let e = one_line_error(&btrace(&["tracepoint", "sched"]));
    assert!(e.contains("CATEGORY:NAME"), "{e}");
    let e = one_line_error(&btrace(&["tracepoint", "-i", "1", "sched:sched_switch"]));
    assert!(e.contains("unexpected argument '-i'"), "{e}");
}
