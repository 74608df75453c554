// SPDX-License-Identifier: Apache-2.0
//! Scope: what -c, -p, --no-children and --cgroup include, with exact counts from
//! workloads of known shape, real cgroups made by the test, and real process trees.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::net::free_port;
use common::*;
use serde_json::Value;

fn count(records: &[Value], name: &str) -> u64 {
    records
        .iter()
        .filter(|r| r["type"] == "hist" && r["syscall"] == name)
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

const N: u64 = 100;

/// `workload tree N`: itself N getppid, a child 2N, a grandchild 3N, a double-forked
/// daemon 4N, an exec'd `workload syscalls 5N` — 15N in all.
#[test]
fn a_command_is_traced_with_every_process_it_starts() {
    let cmd = format!("{} --wait tree {N}", workload());
    let (recs, code, _) = trace_to_end(&["hist", "--json", "-c", &cmd]);
    assert_eq!(code, 0);
    assert_eq!(count(&recs, "getppid"), 15 * N, "{recs:?}");
    assert_eq!(
        count(&recs, "execve"),
        2,
        "the command's and its exec'd child's"
    );
    let (recs, _, _) = trace_to_end(&["hist", "--json", "--no-children", "-c", &cmd]);
    assert_eq!(count(&recs, "getppid"), N, "the command alone: {recs:?}");
    assert_eq!(count(&recs, "execve"), 1);
}

/// The same rule for event streams: exec events of the whole tree.
#[test]
fn tracepoint_events_of_the_whole_tree() {
    let cmd = format!("{} --wait tree {N}", workload());
    let execs = |extra: &[&str]| {
        let mut args = vec!["tracepoint", "--json", "sched:sched_process_exec"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-c", &cmd]);
        let (recs, code, _) = trace_to_end(&args);
        assert_eq!(code, 0);
        of_type(&recs, "event").len()
    };
    assert_eq!(execs(&[]), 2);
    assert_eq!(execs(&["--no-children"]), 1);
}

/// A connection made by a child of the command (here a shell's) is the command's.
#[test]
fn tcp_connections_of_a_child() {
    let port = free_port().to_string();
    let cmd = format!(
        "sh -c '{} --wait tcp-pair 127.0.0.1 {port} 0 100 200; true'",
        workload()
    );
    let (recs, code, _) = trace_to_end(&["tcp", "--json", "--life", "-c", &cmd]);
    assert_eq!(code, 0);
    let lives = of_type(&recs, "tcp_life");
    assert_eq!(lives.len(), 2, "client and accepted socket: {recs:?}");
    let mut bytes: Vec<(u64, u64)> = lives
        .iter()
        .map(|r| {
            (
                r["tx_bytes"].as_u64().unwrap(),
                r["rx_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    bytes.sort();
    assert_eq!(bytes, [(100, 200), (200, 100)]);
    let (recs, _, _) = trace_to_end(&["tcp", "--json", "--life", "--no-children", "-c", &cmd]);
    assert_eq!(of_type(&recs, "tcp_life").len(), 0, "{recs:?}");
}

fn waiting(args: &[&str]) -> Child {
    Command::new(workload())
        .arg("--wait")
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap()
}

fn release(c: &mut Child) {
    c.stdin.take().unwrap().write_all(b"go\n").unwrap();
}

/// -p follows the process's descendants alive at start and those it starts afterwards.
#[test]
fn a_process_is_traced_with_its_descendants() {
    // A shell whose first child is alive (waiting) before btrace starts, and whose second
    // child starts after.
    let script = format!(
        "{w} --wait syscalls 300 0; {w} syscalls 200 0",
        w = workload()
    );
    let mut sh = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    // The first workload is up (blocked on stdin) once it shows in /proc.
    let pid = sh.id();
    for _ in 0..200 {
        if !std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut r = Running::start(&["hist", "--json", "-p", &pid.to_string()]);
    let ids = r.wait_attached();
    sh.stdin.take().unwrap().write_all(b"go\n").unwrap();
    sh.wait().unwrap();
    let (recs, code, _) = r.finish();
    assert_unloaded(&ids);
    assert_eq!(code, 0);
    assert_eq!(count(&recs, "getppid"), 500, "{recs:?}");

    // The tree workload started after attach: all 15N.
    let mut w = waiting(&["tree", &N.to_string()]);
    let mut r = Running::start(&["hist", "--json", "-p", &w.id().to_string()]);
    let ids = r.wait_attached();
    release(&mut w);
    w.wait().unwrap();
    let (recs, _, _) = r.finish();
    assert_unloaded(&ids);
    assert_eq!(count(&recs, "getppid"), 15 * N, "{recs:?}");
}

/// A cgroup made by the test (under whichever cgroup v2 mount this machine has), with a
/// child cgroup: --cgroup counts exactly its processes, those of the child cgroup
/// included, and nothing of a process outside.
#[test]
fn a_cgroup_and_its_descendants() {
    let root = btrace::core::scope::cgroup2_mount().expect("cgroup v2 mounted");
    let parent = root.join(format!("btrace-test-{}", std::process::id()));
    let child = parent.join("inner");
    std::fs::create_dir_all(&child).unwrap();
    let _cleanup = Cleanup(vec![child.clone(), parent.clone()]);
    let mut inside = waiting(&["syscalls", "111", "0"]);
    let mut deeper = waiting(&["syscalls", "222", "0"]);
    let mut outside = waiting(&["syscalls", "444", "0"]);
    std::fs::write(parent.join("cgroup.procs"), inside.id().to_string()).unwrap();
    std::fs::write(child.join("cgroup.procs"), deeper.id().to_string()).unwrap();
    let id = btrace::core::scope::cgroup_id(&parent).unwrap().to_string();
    for spec in [parent.to_str().unwrap(), &id] {
        let mut r = Running::start(&["hist", "--json", "--syscalls", "getppid", "--cgroup", spec]);
        let ids = r.wait_attached();
        let w = |c: &mut Child| c.stdin.as_mut().unwrap().write_all(b"x").unwrap();
        if spec == id {
            // Second round: new workloads in the same cgroups.
            inside = waiting(&["syscalls", "111", "0"]);
            deeper = waiting(&["syscalls", "222", "0"]);
            outside = waiting(&["syscalls", "444", "0"]);
            std::fs::write(parent.join("cgroup.procs"), inside.id().to_string()).unwrap();
            std::fs::write(child.join("cgroup.procs"), deeper.id().to_string()).unwrap();
        }
        for c in [&mut inside, &mut deeper, &mut outside] {
            w(c);
        }
        for c in [&mut inside, &mut deeper, &mut outside] {
            c.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        r.signal(libc::SIGTERM);
        let (recs, code, _) = r.finish();
        assert_unloaded(&ids);
        assert_eq!(code, 0);
        assert_eq!(count(&recs, "getppid"), 333, "--cgroup {spec}: {recs:?}");
    }
    // Events name their cgroup by path.
    let mut w = waiting(&["syscalls", "5", "0"]);
    std::fs::write(child.join("cgroup.procs"), w.id().to_string()).unwrap();
    let rel = format!("/{}", child.strip_prefix(&root).unwrap().display());
    let mut r = Running::start(&[
        "tracepoint",
        "--json",
        "syscalls:sys_enter_getppid",
        "--cgroup",
        parent.to_str().unwrap(),
    ]);
    let ids = r.wait_attached();
    release(&mut w);
    w.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    r.signal(libc::SIGTERM);
    let (recs, _, _) = r.finish();
    assert_unloaded(&ids);
    let events = of_type(&recs, "event");
    assert_eq!(events.len(), 5, "{recs:?}");
    assert!(
        events.iter().all(|e| e["cgroup"] == rel.as_str()),
        "{events:?}"
    );
    let e = one_line_error(&btrace(&["hist", "--cgroup", "no/such/group", "-d", "1"]));
    assert!(e.contains("no such cgroup"), "{e}");
    let e = one_line_error(&btrace(&["hist", "--cgroup", "/tmp", "-d", "1"]));
    assert!(e.contains("not under the cgroup v2 mount"), "{e}");
}

/// Runs `workload syscalls N 0` inside cgroup `cg`, to its end.
fn getppid_in_cgroup(cg: &std::path::Path, n: u64) {
    let mut w = waiting(&["syscalls", &n.to_string(), "0"]);
    std::fs::write(cg.join("cgroup.procs"), w.id().to_string()).unwrap();
    release(&mut w);
    assert!(w.wait().unwrap().success());
}

/// Waits (at most 5 s) for a stderr line of `r` containing `what`.
fn wait_for_line(r: &mut Running, what: &str) {
    for _ in 0..25 {
        if r.stderr_seen.iter().any(|l| l.contains(what)) {
            return;
        }
        r.collect_stderr(Duration::from_millis(200));
    }
    panic!("no stderr line with {what:?}: {:?}", r.stderr_seen);
}

/// A cgroup removed and made again at the same path (a service restarted) is traced
/// again: the new cgroup replaces the old in the kernel filter within a second, and
/// stderr says so. An event stream counts exactly what ran in it before and after.
#[test]
fn a_cgroup_made_again_is_traced_again() {
    let root = btrace::core::scope::cgroup2_mount().expect("cgroup v2 mounted");
    let cg = root.join(format!("btrace-test-again-{}", std::process::id()));
    std::fs::create_dir_all(&cg).unwrap();
    let _cleanup = Cleanup(vec![cg.clone()]);
    let rel = format!("/{}", cg.strip_prefix(&root).unwrap().display());
    let mut r = Running::start(&[
        "tracepoint",
        "--json",
        "syscalls:sys_enter_getppid",
        "--cgroup",
        cg.to_str().unwrap(),
    ]);
    let ids = r.wait_attached();
    getppid_in_cgroup(&cg, 7);
    remove_dir_retrying(&cg);
    wait_for_line(&mut r, "was removed");
    std::fs::create_dir(&cg).unwrap();
    wait_for_line(&mut r, "was made again");
    getppid_in_cgroup(&cg, 11);
    std::thread::sleep(Duration::from_millis(100));
    r.signal(libc::SIGTERM);
    let (recs, code, _) = r.finish();
    assert_unloaded(&ids);
    assert_eq!(code, 0);
    let events = of_type(&recs, "event");
    assert_eq!(
        events.len(),
        18,
        "7 in the first cgroup, 11 in the new one: {recs:?}"
    );
    assert!(
        events.iter().all(|e| e["cgroup"] == rel.as_str()),
        "{events:?}"
    );
}

/// Removes an empty cgroup (its last process may take a moment to leave it).
fn remove_dir_retrying(d: &std::path::Path) {
    for _ in 0..100 {
        if std::fs::remove_dir(d).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("cannot remove {}", d.display());
}

/// Removes test cgroups, innermost first, once their processes are gone.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for d in &self.0 {
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Inside a pid namespace of its own (as in a container): -c and -p count exactly, and
/// the pids printed are the namespace's.
#[test]
fn inside_a_pid_namespace() {
    let bin = btrace_bin();
    let in_ns = |script: &str| {
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "sh", "-c", script])
            .output()
            .unwrap()
    };
    let out = in_ns(&format!(
        "{} hist --json --syscalls getppid -c '{} tree {N}'",
        bin.display(),
        workload()
    ));
    let recs = parse_ndjson(&out.stdout);
    assert_eq!(count(&recs, "getppid"), 15 * N, "{recs:?}");

    // -p of a process of the namespace, whose events name it by its namespace pid.
    let dir = std::env::temp_dir().join(format!("btrace-pidns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = format!(
        r#"cd {dir}; mkfifo go
        {w} --wait syscalls 321 0 < go & wpid=$!
        {b} tracepoint --json syscalls:sys_enter_getppid -p $wpid > out.json 2> err &
        while ! grep -q Tracing err; do sleep 0.02; done
        echo go > go; wait; echo $wpid > wpid"#,
        dir = dir.display(),
        w = workload(),
        b = bin.display()
    );
    let out = in_ns(&script);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wpid: u64 = std::fs::read_to_string(dir.join("wpid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let recs = parse_ndjson(&std::fs::read(dir.join("out.json")).unwrap());
    let events = of_type(&recs, "event");
    assert_eq!(events.len(), 321, "{recs:?}");
    for e in &events {
        assert_eq!(e["pid"], wpid, "the namespace's pid: {e}");
        assert_ne!(e["host_pid"], wpid, "the host's pid beside it: {e}");
    }
    std::fs::remove_dir_all(dir).ok();
}
