// SPDX-License-Identifier: Apache-2.0
//! `btrace open` against the real kernel: a workload that creates K named files through
//! open, openat, openat2 and creat, and fails J opens of missing files.

mod common;

use common::*;
use serde_json::Value;

const K: usize = 8;
const J: usize = 3;

fn tmpdir(tag: &str) -> String {
    let d = std::env::temp_dir().join(format!("btrace-open-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.to_string_lossy().into_owned()
}

fn under<'a>(recs: &'a [Value], dir: &str) -> Vec<&'a Value> {
    of_type(recs, "open")
        .into_iter()
        .filter(|r| r["path"].as_str().unwrap_or("").starts_with(dir))
        .collect()
}

/// What the workload's call i (i % 4) passes: call, flags, mode.
fn expected(i: usize) -> (&'static str, &'static str, &'static str) {
    match i % 4 {
        0 => ("open", "O_WRONLY|O_CREAT|O_CLOEXEC", "0640"),
        1 => ("openat", "O_RDWR|O_CREAT|O_TRUNC", "0600"),
        2 => ("openat2", "O_RDWR|O_CREAT|O_CLOEXEC", "0644"),
        _ => ("creat", "O_WRONLY|O_CREAT|O_TRUNC", "0644"),
    }
}

fn check_all(recs: &[Value], dir: &str) {
    let ev = under(recs, dir);
    assert_eq!(ev.len(), K + J, "{ev:#?}");
    for (i, r) in ev[..K].iter().enumerate() {
        let (call, flags, mode) = expected(i);
        assert_eq!(r["path"], format!("{dir}/f{i}"), "{r}");
        assert_eq!(r["call"], call, "{r}");
        assert_eq!(r["flags"], flags, "{r}");
        assert_eq!(r["mode"], mode, "{r}");
        assert!(r["fd"].as_i64().unwrap() >= 0, "{r}");
        assert_eq!(r["errno"], Value::Null, "{r}");
    }
    for (j, r) in ev[K..].iter().enumerate() {
        assert_eq!(r["path"], format!("{dir}/missing-{j}"), "{r}");
        assert_eq!(r["call"], "openat");
        assert_eq!(r["flags"], "O_RDONLY");
        assert_eq!(r["mode"], Value::Null);
        assert_eq!(r["ret"], -2);
        assert_eq!(r["errno"], "ENOENT");
        assert_eq!(r["fd"], Value::Null);
    }
}

#[test]
fn exactly_the_opens_of_a_command_with_flags_modes_and_errno() {
    let w = workload();
    let dir = tmpdir("all");
    let cmd = format!("{w} --wait opens {dir} {K} {J}");
    let (recs, code, _) = trace_to_end(&["open", "--json", "-c", &cmd]);
    assert_eq!(code, 0);
    check_all(&recs, &dir);
    let s = summary(&recs);
    assert_eq!(s["lost"]["ringbuf"], 0);
    assert_eq!(s["lost"]["map_full"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn raw_tp_hook_gives_the_same_records() {
    let w = workload();
    let dir = tmpdir("raw");
    let cmd = format!("{w} --wait opens {dir} {K} {J}");
    let (recs, code, _) = trace_to_end(&["open", "--json", "--hook", "raw_tp", "-c", &cmd]);
    assert_eq!(code, 0);
    assert_eq!(summary(&recs)["hook"], "raw_tp");
    check_all(&recs, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fails_gives_exactly_the_failed_opens() {
    let w = workload();
    let dir = tmpdir("fails");
    let cmd = format!("{w} --wait opens {dir} {K} {J}");
    let (recs, code, _) = trace_to_end(&["open", "--json", "--fails", "-c", &cmd]);
    assert_eq!(code, 0);
    let ev = of_type(&recs, "open");
    assert_eq!(ev.len(), J, "{ev:#?}");
    assert!(ev.iter().all(|r| r["errno"] == "ENOENT"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn path_prefix_is_filtered_in_the_kernel() {
    let w = workload();
    let dir = tmpdir("prefix");
    let cmd = format!("{w} --wait opens {dir} {K} {J}");
    // Only the failed opens are under this prefix: the kernel drops the rest.
    let prefix = format!("{dir}/missing-");
    let (recs, code, _) = trace_to_end(&["open", "--json", "--path-prefix", &prefix, "-c", &cmd]);
    assert_eq!(code, 0);
    let ev = of_type(&recs, "open");
    assert_eq!(ev.len(), J, "{ev:#?}");
    assert_eq!(summary(&recs)["events"], J as u64);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A process that renames itself to an escape sequence and a newline cannot put either
/// into text output (shown escaped); JSON carries the name as it is.
#[test]
fn a_hostile_process_name_is_escaped_in_text() {
    let cmd = hostile_cmd("open", "/etc/hostname");
    let out = btrace(&["open", "-c", &cmd]);
    assert!(out.status.success());
    assert_name_escaped(&out);
    let out = btrace(&["open", "--json", "-c", &cmd]);
    let recs = parse_ndjson(&out.stdout);
    assert!(
        of_type(&recs, "open")
            .iter()
            .any(|r| r["comm"] == HOSTILE_NAME && r["path"] == "/etc/hostname"),
        "{recs:?}"
    );
}
