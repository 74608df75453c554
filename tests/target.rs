//! The `-c` command's life under btrace: it never runs untraced, runs exactly as it would
//! without btrace, ends when btrace ends (even when it ignores SIGTERM, even when btrace
//! is killed), and its exit status comes back through btrace.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("btrace-target-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0): read its state instead.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

/// The children btrace started (its `-c` command).
fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// SIGTERM at any moment of start-up (0-30 ms after btrace starts) never lets the command
/// run to its end untraced: it is killed at the gate, or traced and then ended.
#[test]
fn a_signal_during_start_up_never_lets_the_command_run_untraced() {
    let dir = scratch("race");
    let done = dir.join("done");
    let cmd = format!("sh -c 'sleep 0.4; touch {}'", done.display());
    for i in 0..40u64 {
        let mut child = Command::new(btrace_bin())
            .args(["hist", "--json", "-c", &cmd])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(i * 750));
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        child.wait().unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "btrace took {:?} to stop after SIGTERM at {} us",
            t0.elapsed(),
            i * 750
        );
        std::thread::sleep(Duration::from_millis(450));
        assert!(
            !done.exists(),
            "the command ran to its end untraced (SIGTERM at {} us)",
            i * 750
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

/// The signal sets of /proc/self/status, without signals 32 and 33: glibc reserves those
/// for itself (thread cancellation, set*id) and installs its own handler in every process,
/// so how a parent left them cannot pass through any glibc program.
fn signal_sets(status: &[u8]) -> Vec<(String, u64)> {
    String::from_utf8_lossy(status)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let bits = u64::from_str_radix(v.trim(), 16).ok()?;
            Some((k.to_string(), bits & !(0b11 << 31)))
        })
        .collect()
}

/// The command starts as from a shell: empty signal mask, SIGPIPE at its default although
/// btrace's runtime ignores it, btrace's own handlers not inherited, ignores it inherited
/// kept.
#[test]
fn the_command_runs_as_it_would_without_btrace() {
    let probe = "grep -E '^Sig(Blk|Ign|Cgt)' /proc/self/status";
    let plain = Command::new("sh").args(["-c", probe]).output().unwrap();
    let under = btrace(&[
        "hist",
        "-o",
        "/dev/null",
        "-c",
        &format!("sh -c \"{probe}\""),
    ]);
    assert!(under.status.success());
    let (under, plain) = (signal_sets(&under.stdout), signal_sets(&plain.stdout));
    assert_eq!(under.len(), 3, "{under:?}");
    assert_eq!(under, plain);
    // A pipeline whose reader leaves early: SIGPIPE ends the writer quietly.
    let out = btrace(&["hist", "-o", "/dev/null", "-c", "sh -c 'yes | head -1'"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "y\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("Broken pipe"), "{err}");
}

/// A command that ignores SIGTERM is killed after the grace period; a second Ctrl-C ends
/// btrace (and the command) at once.
#[test]
fn a_command_that_ignores_sigterm_does_not_keep_btrace_alive() {
    let stubborn = "sh -c 'trap \"\" TERM INT; exec sleep 30'";
    let t0 = Instant::now();
    let (recs, code, _) = {
        let mut r = Running::start(&["hist", "--json", "-d", "0.3", "-c", stubborn]);
        r.wait_attached();
        r.finish()
    };
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(code, 0, "btrace ended the run: exit 0");
    let s = summary(&recs);
    assert_eq!(s["end"], "DurationElapsed");
    assert_eq!(s["exit_signal"], "SIGKILL", "{s}");

    let mut r = Running::start(&["hist", "--json", "-c", stubborn]);
    r.wait_attached();
    let kids = children_of(r.pid());
    assert_eq!(kids.len(), 1, "{kids:?}");
    r.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(200));
    let t1 = Instant::now();
    r.signal(libc::SIGINT);
    let (_, code, _) = r.finish();
    assert!(
        t1.elapsed() < Duration::from_secs(1),
        "second Ctrl-C: {:?}",
        t1.elapsed()
    );
    assert_eq!(code, 130);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!alive(kids[0]), "the command outlived btrace");
}

/// btrace killed outright (SIGKILL) does not leave its command running.
#[test]
fn the_command_dies_with_btrace() {
    let mut r = Running::start(&["hist", "-c", "sleep 30"]);
    r.wait_attached();
    let kids = children_of(r.pid());
    assert_eq!(kids.len(), 1, "{kids:?}");
    r.signal(libc::SIGKILL);
    r.finish();
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(kids[0]) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(kids[0]), "sleep 30 outlived a killed btrace");
}

/// btrace exits with the command's status when the command ends the run, and the summary
/// says how it ended.
#[test]
fn the_commands_exit_status_comes_back() {
    let (recs, code, _) = trace_to_end(&["hist", "--json", "-c", "sh -c 'exit 3'"]);
    assert_eq!(code, 3);
    let s = summary(&recs);
    assert_eq!(
        (s["exit_status"].as_i64(), &s["exit_signal"]),
        (Some(3), &serde_json::Value::Null)
    );
    let (recs, code, _) = trace_to_end(&["tcp", "--json", "-c", "sh -c 'kill -KILL $$'"]);
    assert_eq!(code, 137);
    assert_eq!(summary(&recs)["exit_signal"], "SIGKILL");
    let (_, code, _) = trace_to_end(&[
        "tracepoint",
        "--json",
        "sched:sched_process_exec",
        "-c",
        "true",
    ]);
    assert_eq!(code, 0);
}

/// A file that exists but cannot run says so (not "command not found").
#[test]
fn a_command_that_cannot_run_says_why() {
    let dir = scratch("noexec");
    let plain = dir.join("plain");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    let e = one_line_error(&btrace(&["hist", "-c", plain.to_str().unwrap()]));
    assert!(e.contains("not executable"), "{e}");
    let e = one_line_error(&btrace(&["hist", "-c", dir.to_str().unwrap()]));
    assert!(e.contains("is a directory"), "{e}");
    let e = one_line_error(&btrace(&["hist", "-c", "no-such-program-btrace"]));
    assert!(
        e.contains("command not found: no-such-program-btrace"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).ok();
}
