// SPDX-License-Identifier: Apache-2.0
//! `btrace kprobe` on this machine. The development kernel has neither kprobes nor
//! usable fentry: there the test is the one clear error. On a kernel that has them (the
//! VMs of `make vmtest` run the same checks from tests/vm/checks/kprobe.sh) the events
//! themselves are checked.

mod common;

use std::path::Path;

use common::*;

/// Whether kprobe tracing can work here, as doctor finds by real attach attempts.
fn kprobe_works() -> bool {
    let out = btrace(&["doctor", "--json"]);
    parse_ndjson(&out.stdout).iter().any(|r| {
        r["type"] == "command"
            && r["command"] == "kprobe"
            && r["mode"] == "auto"
            && r["works"] == true
    })
}

#[test]
fn unknown_function_one_line() {
    let e = one_line_error(&btrace(&["kprobe", "no_such_function_btrace"]));
    assert!(
        e.contains("unknown kernel function 'no_such_function_btrace'"),
        "{e}"
    );
}

/// One test, two kernels: where kprobe tracing works, exact events; where it cannot (the
/// development machines), the one clear error. Either way something is asserted.
#[test]
fn kprobe_on_this_kernel() {
    if kprobe_works() {
        exact_events_per_open();
    } else {
        no_kprobes_no_fentry_says_so();
    }
}

fn no_kprobes_no_fentry_says_so() {
    let e = one_line_error(&btrace(&["kprobe"]));
    if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        assert!(
            e.contains("neither kprobes") && e.contains("nor fentry"),
            "{e}"
        );
    }
    assert!(e.contains("btrace doctor"), "{e}");
    let e = one_line_error(&btrace(&["kprobe", "--mode", "kprobe"]));
    assert!(
        e.contains("no kprobes") && e.contains("btrace doctor"),
        "{e}"
    );
    let e = one_line_error(&btrace(&["kprobe", "--mode", "fentry"]));
    assert!(
        e.contains("cannot trace kernel function 'do_sys_openat2'"),
        "{e}"
    );
}

#[test]
fn bad_flags_one_line() {
    let e = one_line_error(&btrace(&["kprobe", "--max-inflight", "5"]));
    assert!(e.contains("--ret"), "{e}");
    let e = one_line_error(&btrace(&["kprobe", "-i", "1"]));
    assert!(e.contains("needs --hist"), "{e}");
    let e = one_line_error(&btrace(&["kprobe", "--hist", "--ret"]));
    assert!(e.contains("cannot be used with"), "{e}");
}

fn exact_events_per_open() {
    const K: usize = 5;
    let dir = std::env::temp_dir().join(format!("btrace-kp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.to_string_lossy().into_owned();
    for mode in ["auto", "fentry", "kprobe"] {
        let cmd = format!("{} --wait open {dir} {K}", workload());
        let (recs, code, _) =
            trace_to_end(&["kprobe", "--json", "--ret", "--mode", mode, "-c", &cmd]);
        assert_eq!(code, 0);
        let evs = of_type(&recs, "event");
        assert_eq!(evs.len(), K, "{mode}: {recs:?}");
        let pid = evs[0]["pid"].as_u64().unwrap();
        for (i, e) in evs.iter().enumerate() {
            assert_eq!(e["comm"], "workload");
            assert_eq!(e["args"]["filename"], format!("{dir}/btrace-{K}-{pid}-{i}"));
            assert!(e["ret"].as_i64().unwrap() >= 0);
            assert!(e["latency_ns"].as_u64().unwrap() > 0);
        }
        assert_eq!(summary(&recs)["lost"]["ringbuf"], 0);
    }
}

/// Globs (issue 16): without --count, or --max-probes without --count, one line; with
/// --count, where kprobes are missing the one line saying so, else a glob beyond
/// --max-probes is one line saying how many matched.
#[test]
fn globs_one_line() {
    for extra in [&[][..], &["--hist"][..]] {
        let mut a = vec!["kprobe", "tcp_*"];
        a.extend_from_slice(extra);
        let e = one_line_error(&btrace(&a));
        assert!(e.contains("a glob needs --count"), "{e}");
    }
    let e = one_line_error(&btrace(&["kprobe", "tcp_sendmsg", "--max-probes", "5"]));
    assert!(e.contains("needs --count"), "{e}");
    let e = one_line_error(&btrace(&["kprobe", "tcp_*", "--count", "--hook", "fentry"]));
    assert!(e.contains("leave out --hook fentry"), "{e}");
    let e = one_line_error(&btrace(&[
        "kprobe",
        "tcp_*",
        "--count",
        "--max-probes",
        "1",
        "-d",
        "1",
    ]));
    if Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        assert!(e.contains("at most 1 are probed at once"), "{e}");
    } else {
        assert!(e.contains("no kprobes") && e.contains("--count"), "{e}");
    }
}
