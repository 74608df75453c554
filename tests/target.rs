// SPDX-License-Identifier: Apache-2.0
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
        // A hang, not a slow stop: a signal during load takes effect once the programs
        // are loaded, and under heavy load that took 4.1 s once.
        assert!(
            t0.elapsed() < Duration::from_secs(15),
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
    // Started ignoring SIGINT and SIGHUP (nohup, a shell's background job), btrace catches
    // them, yet the command inherits them ignored, as it would started beside btrace.
    let ignoring = |argv: &[&str]| {
        let mut args = vec!["-c", "trap '' INT HUP; exec \"$0\" \"$@\""];
        args.extend_from_slice(argv);
        Command::new("sh").args(&args).output().unwrap()
    };
    let plain = signal_sets(&ignoring(&["sh", "-c", probe]).stdout);
    let bin = btrace_bin();
    let cmd = format!("sh -c \"{probe}\"");
    let under = ignoring(&[bin.to_str().unwrap(), "hist", "-o", "/dev/null", "-c", &cmd]);
    assert!(under.status.success(), "{under:?}");
    let under = signal_sets(&under.stdout);
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

    // A second signal: 128 + its number, as a shell reports a process it killed.
    for (sig, want) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let mut r = Running::start(&["hist", "--json", "-c", stubborn]);
        r.wait_attached();
        let kids = children_of(r.pid());
        assert_eq!(kids.len(), 1, "{kids:?}");
        // Signalled only once its trap is set (it has become `sleep`): btrace ends the
        // command as soon as the signal comes, and a shell still starting would die of it.
        let t_exec = Instant::now();
        while std::fs::read_to_string(format!("/proc/{}/comm", kids[0]))
            .is_ok_and(|c| c.trim() != "sleep")
        {
            assert!(
                t_exec.elapsed() < Duration::from_secs(5),
                "the command never ran"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        r.signal(sig);
        std::thread::sleep(Duration::from_millis(200));
        let t1 = Instant::now();
        r.signal(sig);
        let (_, code, _) = r.finish();
        assert!(
            t1.elapsed() < Duration::from_secs(1),
            "second signal {sig}: {:?}",
            t1.elapsed()
        );
        assert_eq!(code, want, "second signal {sig}");
        std::thread::sleep(Duration::from_millis(100));
        assert!(!alive(kids[0]), "the command outlived btrace");
    }
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

/// -p of something that is not a live user-space process says what it is instead.
#[test]
fn targets_that_are_not_what_they_seem() {
    // A thread that is not its process's leader.
    let mut w = Command::new(workload())
        .args(["block", "2", "3000"])
        .spawn()
        .unwrap();
    let pid = w.id();
    let deadline = Instant::now() + Duration::from_secs(2);
    let thread = loop {
        let tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&t| t != pid)
            .collect();
        if let Some(&t) = tids.first() {
            break t;
        }
        assert!(Instant::now() < deadline, "the workload started no thread");
        std::thread::sleep(Duration::from_millis(10));
    };
    let e = one_line_error(&btrace(&["hist", "-p", &thread.to_string()]));
    assert!(
        e.contains(&format!("is a thread of process {pid}")) && e.contains("--tid"),
        "{e}"
    );
    let e = one_line_error(&btrace(&[
        "hist",
        "-p",
        &pid.to_string(),
        "--tid",
        "999999999",
        "-d",
        "1",
    ]));
    assert!(e.contains("no thread with id 999999999"), "{e}");
    w.kill().ok();
    w.wait().ok();
    // kthreadd, the parent of every kernel thread, is pid 2.
    let e = one_line_error(&btrace(&["hist", "-p", "2"]));
    assert!(e.contains("kernel thread"), "{e}");
    // A child of this test that exited and was not reaped yet.
    let mut z = Command::new("true").spawn().unwrap();
    let zpid = z.id();
    std::thread::sleep(Duration::from_millis(200));
    let e = one_line_error(&btrace(&["hist", "-p", &zpid.to_string()]));
    assert!(e.contains("zombie"), "{e}");
    z.wait().ok();
}

/// Store bounds beyond what could ever fill are refused at parse time, with their cost.
#[test]
fn absurd_store_sizes_are_refused_with_their_cost() {
    for (cmd, flag) in [("hist", "--max-threads"), ("tcp", "--max-conns")] {
        let out = btrace(&[cmd, flag, "4294967295", "-d", "1"]);
        let e = one_line_error(&out);
        assert_eq!(out.status.code(), Some(2), "{e}");
        assert!(
            e.contains("beyond the limit of 4194304") && e.contains("GB of kernel memory"),
            "{e}"
        );
    }
}

/// Capabilities held only in a user namespace cannot load BPF: one line, for every
/// command, and doctor says so instead of blaming the kernel.
#[test]
fn a_user_namespace_gets_one_clear_line() {
    let unshare = |args: &[&str]| {
        Command::new("unshare")
            .args(["-U", "-r"])
            .arg(btrace_bin())
            .args(args)
            .output()
            .unwrap()
    };
    for args in [&["hist", "-d", "1"][..], &["tcp", "-d", "1"], &["verifier"]] {
        let e = one_line_error(&unshare(args));
        assert!(e.contains("user namespace"), "{args:?}: {e}");
    }
    let out = unshare(&["doctor", "--json"]);
    let recs = parse_ndjson(&out.stdout);
    let caps = recs
        .iter()
        .find(|r| r["type"] == "fact" && r["name"] == "capabilities")
        .unwrap();
    assert_eq!(caps["value"], "user namespace", "{caps}");
    let ringbuf = recs
        .iter()
        .find(|r| r["type"] == "fact" && r["name"] == "ringbuf")
        .unwrap();
    assert!(
        ringbuf["detail"].as_str().unwrap().contains("not tried"),
        "{ringbuf}"
    );
}

/// CAP_BPF and CAP_PERFMON without root: syscall tracing works; classic tracepoints need
/// tracefs, which root keeps unreadable here (mode 0700), and the error says exactly that.
#[test]
fn capabilities_without_root() {
    // A copy every user may run (target/ may sit under a directory others cannot enter).
    let bin = std::env::temp_dir().join(format!("btrace-caps-{}", std::process::id()));
    std::fs::copy(btrace_bin(), &bin).unwrap();
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=+bpf,+perfmon",
                "--ambient-caps=+bpf,+perfmon",
            ])
            .arg(&bin)
            .args(args)
            .output()
            .unwrap()
    };
    let out = as_nobody(&["hist", "--json", "-d", "0.3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary(&parse_ndjson(&out.stdout));
    let tracefs = std::fs::metadata("/sys/kernel/tracing").map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o005
    });
    let tp = as_nobody(&["tracepoint", "sched:sched_switch", "-d", "0.3"]);
    if tracefs.is_ok_and(|other| other == 0) {
        let e = one_line_error(&tp);
        assert!(e.contains("not readable by this user"), "{e}");
    } else {
        assert!(
            tp.status.success(),
            "{}",
            String::from_utf8_lossy(&tp.stderr)
        );
    }
    std::fs::remove_file(bin).ok();
}

/// A /proc that is hidden (another filesystem mounted over it) is named as the problem,
/// not mistaken for missing capabilities.
#[test]
fn a_hidden_proc_is_named() {
    let script = format!(
        "mount -t tmpfs none /proc && exec {} hist -d 1",
        btrace_bin().display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let e = one_line_error(&out);
    assert!(e.contains("/proc is not readable"), "{e}");
}

/// getppid calls counted by `hist --json` in `recs`.
fn getppid_count(recs: &[serde_json::Value]) -> u64 {
    recs.iter()
        .filter(|r| r["type"] == "hist" && r["syscall"] == "getppid")
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

/// A command that double-forks a daemon and exits (status 3): the daemon makes its N
/// getppid calls a second after the command has exited. `-c` follows the tree until the
/// daemon has exited, as `strace -f` does, and counts every call; `--no-children` ends
/// with the command; the exit status is the command's own either way.
#[test]
fn a_daemon_that_outlives_the_command_is_followed_to_its_end() {
    const N: u64 = 1000;
    const HOLD_MS: u64 = 1000;
    let cmd = format!("{} --wait daemon {N} {HOLD_MS}", workload());
    let (recs, code, stderr) =
        trace_to_end(&["hist", "--json", "--syscalls", "getppid", "-c", &cmd]);
    assert_eq!(code, 3, "the command's own status: {stderr:?}");
    assert_eq!(getppid_count(&recs), N, "{recs:?}");
    let sum = summary(&recs);
    assert_eq!(sum["outlived_processes"], 1, "{sum}");
    assert_eq!(sum["end"], "TargetExited", "{sum}");
    assert!(
        sum["duration_s"].as_f64().unwrap() >= HOLD_MS as f64 / 1000.0,
        "{sum}"
    );
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("following the 1 process it left running")),
        "{stderr:?}"
    );

    let (recs, code, _) = trace_to_end(&[
        "hist",
        "--json",
        "--syscalls",
        "getppid",
        "--no-children",
        "-c",
        &cmd,
    ]);
    assert_eq!(code, 3);
    assert_eq!(
        getppid_count(&recs),
        0,
        "the daemon is not traced: {recs:?}"
    );
    let sum = summary(&recs);
    assert!(sum.get("outlived_processes").is_none(), "{sum}");
    assert!(
        sum["duration_s"].as_f64().unwrap() < HOLD_MS as f64 / 1000.0,
        "--no-children does not wait for the daemon: {sum}"
    );

    // Ctrl-C while the daemon still runs ends the run; the status is still the command's.
    let long = format!("{} --wait daemon {N} 5000", workload());
    let mut r = Running::start(&["hist", "--json", "--syscalls", "getppid", "-c", &long]);
    r.wait_attached();
    r.send_line("go");
    let t0 = Instant::now();
    while !r
        .stderr_seen
        .iter()
        .any(|l| l.contains("following the 1 process"))
    {
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", r.stderr_seen);
        r.collect_stderr(Duration::from_millis(100));
    }
    r.signal(libc::SIGINT);
    let (recs, code, _) = r.finish();
    assert_eq!(code, 3, "the command's own status after Ctrl-C");
    let sum = summary(&recs);
    assert_eq!(sum["end"], "Interrupted", "{sum}");
    assert_eq!(sum["outlived_processes"], 1, "{sum}");

    // The text summary says it too.
    let out = Command::new(btrace_bin())
        .args([
            "hist",
            "--syscalls",
            "getppid",
            "-c",
            &format!("{} daemon {N} 300", workload()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 process outlived the traced one and was followed."),
        "{text}"
    );

    // strace -f counts the same calls, when it is installed.
    let log = scratch("strace").join("log");
    let strace = Command::new("strace")
        .args(["-f", "-c", "-e", "trace=getppid", "-o"])
        .arg(&log)
        .args([&workload(), "daemon", &N.to_string(), "300"])
        .status();
    if let Ok(st) = strace {
        assert_eq!(st.code(), Some(3));
        let table = std::fs::read_to_string(&log).unwrap();
        let calls: u64 = table
            .lines()
            .find(|l| l.trim_end().ends_with(" getppid"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
            .unwrap_or_else(|| panic!("no getppid row in strace's table: {table}"));
        assert_eq!(calls, N, "strace -f -c: {table}");
    }
}

/// The same for `-p`: the run ends when the daemon the process left has exited.
#[test]
fn a_daemon_that_outlives_a_traced_pid_is_followed_to_its_end() {
    const N: u64 = 700;
    let mut w = Command::new(workload())
        .args(["--wait", "daemon", &N.to_string(), "500"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = w.id().to_string();
    let mut r = Running::start(&["hist", "--json", "--syscalls", "getppid", "-p", &pid]);
    r.wait_attached();
    {
        use std::io::Write;
        writeln!(w.stdin.take().unwrap(), "go").unwrap();
    }
    let (recs, code, stderr) = r.finish();
    assert_eq!(w.wait().unwrap().code(), Some(3));
    assert_eq!(code, 0, "{stderr:?}");
    assert_eq!(getppid_count(&recs), N, "{recs:?}");
    let sum = summary(&recs);
    assert_eq!(sum["outlived_processes"], 1, "{sum}");
    assert!(sum["duration_s"].as_f64().unwrap() >= 0.5, "{sum}");
}
