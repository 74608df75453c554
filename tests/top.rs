// SPDX-License-Identifier: Apache-2.0
//! `btrace top` against the real kernel: JSON snapshots with exact totals, and the
//! dashboard itself driven in a real terminal (tmux).

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Sum over all snapshots of one syscall's per-interval count.
fn syscall_count(snaps: &[&Value], name: &str) -> u64 {
    snaps
        .iter()
        .flat_map(|s| s["syscalls"].as_array().unwrap())
        .filter(|r| r["syscall"] == name)
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

/// Sum over all snapshots of every syscall's per-interval count.
fn all_syscalls(snaps: &[&Value]) -> u64 {
    snaps
        .iter()
        .flat_map(|s| s["syscalls"].as_array().unwrap())
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

/// Sum over all snapshots of one process's per-interval count.
fn process_count(snaps: &[&Value], pid: u64) -> u64 {
    snaps
        .iter()
        .flat_map(|s| s["processes"].as_array().unwrap())
        .filter(|p| p["pid"] == pid)
        .map(|p| p["count"].as_u64().unwrap())
        .sum()
}

fn probe<'a>(snap: &'a Value, group: &str) -> &'a Value {
    snap["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["group"] == group)
        .unwrap_or_else(|| panic!("no probe group {group} in {snap}"))
}

/// Checks what holds in every snapshot: buckets add up, rows are busiest first.
fn check_snapshots(snaps: &[&Value]) {
    for s in snaps {
        let rows = s["syscalls"].as_array().unwrap();
        for r in rows {
            let b: u64 = r["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["count"].as_u64().unwrap())
                .sum();
            assert_eq!(b, r["count"].as_u64().unwrap(), "buckets vs count: {r}");
        }
        let counts: Vec<u64> = rows.iter().map(|r| r["count"].as_u64().unwrap()).collect();
        assert!(counts.windows(2).all(|w| w[0] >= w[1]), "not sorted: {s}");
    }
}

#[test]
fn json_snapshots_carry_exact_totals_of_a_command() {
    let cmd = format!("{} --wait syscalls 1000 500", workload());
    let (recs, code, _) = trace_to_end(&["top", "--json", "-i", "0.2", "-c", &cmd]);
    assert_eq!(code, 0);
    let snaps = of_type(&recs, "snapshot");
    assert!(!snaps.is_empty());
    check_snapshots(&snaps);
    let pid = snaps[0]["filter"]["pid"]
        .as_u64()
        .expect("-c sets the pid filter");
    assert_eq!(syscall_count(&snaps, "getppid"), 1000, "{recs:?}");
    assert_eq!(syscall_count(&snaps, "read"), 500, "{recs:?}");
    // Cumulative totals agree with the per-interval counts.
    let last_getppid = snaps
        .iter()
        .rev()
        .flat_map(|s| s["syscalls"].as_array().unwrap())
        .find(|r| r["syscall"] == "getppid")
        .unwrap();
    assert_eq!(last_getppid["total"], 1000);
    // Only the filtered process is counted, and it is counted exactly once per syscall.
    for s in &snaps {
        for p in s["processes"].as_array().unwrap() {
            assert_eq!(p["pid"], pid, "another process in a filtered run: {p}");
            assert_eq!(p["comm"], "workload");
        }
    }
    assert_eq!(process_count(&snaps, pid), all_syscalls(&snaps));
    // The probes ran for every syscall of the machine (the filter is inside them), and
    // the kernel's run-time statistics counted them.
    let last = snaps.last().unwrap();
    let sys = probe(last, "syscalls");
    assert_eq!(sys["attached"], true);
    assert_eq!(sys["links"], sys["programs"]);
    assert!(sys["programs"].as_u64().unwrap() >= 2);
    assert!(
        sys["total_run_cnt"].as_u64().unwrap() >= 2 * 1500,
        "run-time stats: {sys}"
    );
    assert!(sys["avg_ns"].as_f64().unwrap() > 0.0);
    let s = summary(&recs);
    assert_eq!(s["end"], "TargetExited");
    assert_eq!(s["lost"]["syscalls"]["map_full"], 0);
}

#[test]
fn per_cpu_counts_sum_exactly_across_cpus() {
    // One thread pinned on each CPU: the per-CPU slots of both maps are all in use.
    let cmd = format!("{} --wait spread 400000", workload());
    let (recs, code, _) = trace_to_end(&["top", "--json", "-i", "0.25", "-c", &cmd]);
    assert_eq!(code, 0);
    let snaps = of_type(&recs, "snapshot");
    let pid = snaps[0]["filter"]["pid"].as_u64().unwrap();
    assert_eq!(syscall_count(&snaps, "getppid"), 400_000, "{recs:?}");
    assert_eq!(process_count(&snaps, pid), all_syscalls(&snaps));
    assert!(process_count(&snaps, pid) >= 400_000);
}

#[test]
fn pid_mode_counts_exactly_and_ends_with_the_process() {
    let mut target = Command::new(workload())
        .args(["--wait", "syscalls", "700", "300"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = target.id();
    let mut r = Running::start(&["top", "--json", "-i", "0.3", "-p", &pid.to_string()]);
    let ids = r.wait_attached();
    target.stdin.take().unwrap().write_all(b"go\n").unwrap();
    target.wait().unwrap();
    let (recs, code, _) = r.finish();
    assert_unloaded(&ids);
    assert_eq!(code, 0);
    let snaps = of_type(&recs, "snapshot");
    assert_eq!(syscall_count(&snaps, "getppid"), 700);
    assert_eq!(syscall_count(&snaps, "read"), 300);
    assert_eq!(process_count(&snaps, pid as u64), all_syscalls(&snaps));
    assert_eq!(summary(&recs)["end"], "TargetExited");
}

#[test]
fn run_queue_latency_counts_every_wakeup_of_the_process() {
    // 32 threads: each is woken once when created and once when its sleep ends, so at
    // least 64 waits for a CPU belong to this process.
    let cmd = format!("{} --wait block 32 20", workload());
    let (recs, code, _) = trace_to_end(&["top", "--json", "-i", "0.2", "-c", &cmd]);
    assert_eq!(code, 0);
    let snaps = of_type(&recs, "snapshot");
    let mut waits = 0;
    for s in &snaps {
        let sched = &s["runq"];
        let b: u64 = sched["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(b, sched["count"].as_u64().unwrap(), "{sched}");
        waits += sched["count"].as_u64().unwrap();
    }
    assert!(waits >= 64, "only {waits} run-queue waits: {recs:?}");
    let sched = probe(snaps.last().unwrap(), "runq");
    assert_eq!(sched["attached"], true);
    assert!(sched["total_run_cnt"].as_u64().unwrap() >= 64);
    assert_eq!(summary(&recs)["lost"]["runq"]["map_full"], 0);
}

#[test]
fn tcp_connections_with_exact_bytes_and_the_port_filter() {
    let (p1, p2) = (free_port(), free_port());
    let mut r = Running::start(&["top", "--json", "-i", "0.3", "--port", &p1.to_string()]);
    let ids = r.wait_attached();
    let pair = |p: u16, tx: &str, rx: &str| {
        Command::new(workload())
            .args(["tcp-pair", "127.0.0.1", &p.to_string(), "300", tx, rx])
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (pair(p1, "1234", "56789"), pair(p2, "7", "8"));
    let pid = a.id() as u64;
    a.wait().unwrap();
    b.wait().unwrap();
    // Let the closing transitions reach a snapshot, then end as Ctrl-C would.
    std::thread::sleep(Duration::from_millis(700));
    r.signal(libc::SIGINT);
    let (recs, code, _) = r.finish();
    assert_unloaded(&ids);
    assert_eq!(code, 0);
    let snaps = of_type(&recs, "snapshot");
    assert_eq!(snaps[0]["filter"]["port"], p1);
    let closed: Vec<&Value> = snaps
        .iter()
        .flat_map(|s| s["tcp"]["recently_closed"].as_array().unwrap())
        .collect();
    let port_of = |e: &Value| e.as_str().unwrap().rsplit(':').next().unwrap().to_string();
    for c in &closed {
        assert!(
            port_of(&c["local"]) == p1.to_string() || port_of(&c["remote"]) == p1.to_string(),
            "a connection outside the port filter: {c}"
        );
    }
    // Both ends of the one connection, each with its own direction's exact bytes.
    let client = closed
        .iter()
        .find(|c| port_of(&c["remote"]) == p1.to_string())
        .unwrap_or_else(|| panic!("client end missing: {closed:?}"));
    assert_eq!(client["tx_bytes"], 1234);
    assert_eq!(client["rx_bytes"], 56789);
    assert_eq!(client["pid"], pid);
    assert_eq!(client["comm"], "workload");
    assert!(client["duration_ms"].as_f64().unwrap() >= 300.0, "{client}");
    let server = closed
        .iter()
        .find(|c| port_of(&c["local"]) == p1.to_string())
        .unwrap_or_else(|| panic!("server end missing: {closed:?}"));
    assert_eq!(server["tx_bytes"], 56789);
    assert_eq!(server["rx_bytes"], 1234);
    assert_eq!(closed.len(), 2, "{closed:?}");
    let tcp = probe(snaps.last().unwrap(), "tcp");
    assert_eq!(tcp["attached"], true);
    // The transition program, and the two that keep the pid filter's process tree.
    assert_eq!(tcp["links"], 3);
}

// ---- the dashboard in a real terminal ----

/// A tmux server of its own with one fixed-size session running `command`.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(name: &str, command: &str) -> Tmux {
        let socket = format!("btrace-test-{}-{name}", std::process::id());
        let t = Tmux { socket };
        let ok = t
            .cmd(&[
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "180",
                "-y",
                "50",
                command,
            ])
            .status()
            .expect("tmux is missing: run `make deps`")
            .success();
        assert!(ok, "tmux new-session failed");
        t
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]).args(args);
        c
    }

    fn out(&self, args: &[&str]) -> String {
        let o = self.cmd(args).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.out(&["capture-pane", "-p", "-t", "t"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status().unwrap().success());
    }

    /// Waits (up to `secs`) until the screen satisfies `ok`; returns that screen.
    fn wait_for(&self, secs: u64, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of the program the pane's shell runs.
    fn child_pid(&self) -> u32 {
        let shell: u32 = self
            .out(&["display", "-p", "-t", "t", "#{pane_pid}"])
            .trim()
            .parse()
            .unwrap();
        for _ in 0..100 {
            let kids = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
                .unwrap_or_default();
            if let Some(pid) = kids.split_whitespace().next() {
                return pid.parse().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the pane's shell started nothing");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).status();
    }
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pace(rate: u32, secs: u32) -> Child {
    Command::new(workload())
        .args(["pace", &rate.to_string(), &secs.to_string()])
        .spawn()
        .unwrap()
}

/// Ids of the BPF links a process holds (from /proc/PID/fdinfo).
fn link_ids(pid: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("link_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    ids.sort();
    ids
}

/// Link ids `bpftool link show` lists.
fn bpftool_links() -> Vec<u32> {
    let out = Command::new("bpftool")
        .args(["-j", "link", "show"])
        .output()
        .expect("bpftool is missing: run `make deps`");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_u64().unwrap() as u32)
        .collect()
}

fn wait_until(ok: impl Fn() -> bool) {
    for _ in 0..100 {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("condition never held");
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Rows of the top-processes panel as (pid, comm, count), in screen order.
fn process_rows(screen: &str) -> Vec<(u32, String, u64)> {
    screen
        .lines()
        .filter_map(|l| l.split("││").nth(1))
        .filter_map(|right| {
            let w: Vec<&str> = right.trim_start_matches('│').split_whitespace().collect();
            match w.as_slice() {
                [pid, comm, count, ..] => {
                    Some((pid.parse().ok()?, comm.to_string(), count.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

fn probe_state<'a>(screen: &'a str, group: &str) -> Option<&'a str> {
    screen.lines().find_map(|l| {
        let w: Vec<&str> = l.trim_start_matches('│').split_whitespace().collect();
        (w.len() > 2 && w[1] == group).then(|| w[2])
    })
}

fn assert_terminal_restored(screen: &str, t: &Tmux) {
    // `stty -a` ran after btrace in the same terminal: canonical mode and echo are back.
    let words: Vec<&str> = screen.split_whitespace().collect();
    assert!(
        words.contains(&"icanon") && words.contains(&"echo"),
        "terminal left raw:\n{screen}"
    );
    assert_eq!(
        t.out(&["display", "-p", "-t", "t", "#{alternate_on}"])
            .trim(),
        "0"
    );
}

#[test]
fn dashboard_in_a_terminal_shows_toggles_filters_and_quits_clean() {
    let mut fast = pace(40000, 60);
    let mut slow = pace(8000, 60);
    let (fast_pid, slow_pid) = (fast.id(), slow.id());
    let bin = btrace_bin();
    let t = Tmux::start(
        "dash",
        &format!("{} top; echo EXITED $?; stty -a; sleep 60", bin.display()),
    );
    let pid = t.child_pid();

    // The panels, and both workloads in the process list, the busier one first.
    let screen = t.wait_for(15, "both workloads in the process list", |s| {
        let rows = process_rows(s);
        rows.iter().any(|r| r.0 == fast_pid) && rows.iter().any(|r| r.0 == slow_pid)
    });
    for panel in ["Syscalls", "Top processes", "Run-queue latency", "Probes"] {
        assert!(screen.contains(panel), "no {panel} panel:\n{screen}");
    }
    let rows = process_rows(&screen);
    let at = |p| rows.iter().position(|r| r.0 == p).unwrap();
    assert!(at(fast_pid) < at(slow_pid), "order wrong:\n{screen}");
    assert!(rows[at(fast_pid)].2 > rows[at(slow_pid)].2);
    assert_eq!(rows[at(fast_pid)].1, "workload");

    // Toggling a group detaches its links (the programs stay loaded), and back.
    let progs = prog_ids(pid);
    let links = link_ids(pid);
    // Each group: its programs plus the two that keep the pid filter's process tree.
    assert_eq!(
        links.len(),
        13,
        "5 syscall + 3 tcp + 5 runq links: {links:?}"
    );
    let listed = bpftool_links();
    assert!(
        links.iter().all(|l| listed.contains(l)),
        "bpftool lists {listed:?}"
    );
    for (key, group, n) in [("1", "syscalls", 5), ("2", "tcp", 3), ("3", "runq", 5)] {
        let before = link_ids(pid);
        t.keys(&[key]);
        t.wait_for(5, "group off", |s| probe_state(s, group) == Some("off"));
        let now = link_ids(pid);
        assert_eq!(now.len(), before.len() - n, "{group} off: {now:?}");
        // What bpftool lists agrees: the group's links are gone from the kernel.
        wait_until(|| {
            let listed = bpftool_links();
            before.iter().filter(|l| listed.contains(l)).count() == before.len() - n
        });
        assert_eq!(prog_ids(pid), progs, "programs stay loaded while detached");
        t.keys(&[key]);
        t.wait_for(5, "group on", |s| probe_state(s, group) == Some("on"));
        assert_eq!(link_ids(pid).len(), links.len());
    }

    // Toggling many times leaks nothing.
    let fds = fd_count(pid);
    for _ in 0..30 {
        t.keys(&["1", "2", "3"]);
    }
    // Keys are handled in order: the help box opened by a last `?` shows that all 90
    // toggles were handled (the screen before them already read "on", so waiting for
    // "on" alone could pass while the dashboard was half way through them).
    t.keys(&["?"]);
    t.wait_for(10, "the help box after the toggles", |s| {
        s.contains("any key closes")
    });
    t.keys(&["Space"]);
    t.wait_for(5, "groups on", |s| {
        !s.contains("any key closes")
            && ["syscalls", "tcp", "runq"]
                .iter()
                .all(|g| probe_state(s, g) == Some("on"))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(link_ids(pid).len(), links.len());
    assert_eq!(fd_count(pid), fds, "file descriptors leaked");
    assert_eq!(prog_ids(pid), progs);

    // The pid filter: only the slow workload is left in the list.
    t.keys(&["p"]);
    t.keys(&[&slow_pid.to_string(), "Enter"]);
    t.wait_for(8, "only the filtered process", |s| {
        let rows = process_rows(s);
        s.contains(&format!("pid filter: {slow_pid}")) && rows.len() == 1 && rows[0].0 == slow_pid
    });
    t.keys(&[
        "p", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "Enter",
    ]);
    t.wait_for(8, "filter cleared", |s| {
        s.contains("pid filter: off") && process_rows(s).iter().any(|r| r.0 == fast_pid)
    });

    // The cgroup filter (a cgroup v2 made here, the slow workload moved into it): only
    // the processes in it are counted, and only connections whose owner is in it show.
    let root = btrace::core::scope::cgroup2_mount().expect("cgroup v2 mounted");
    let cg = root.join(format!("btrace-top-{}", std::process::id()));
    std::fs::create_dir_all(&cg).unwrap();
    let _rm = RemoveDir(cg.clone());
    std::fs::write(cg.join("cgroup.procs"), slow_pid.to_string()).unwrap();
    let cg_text = cg.display().to_string();
    t.keys(&["g"]);
    t.keys(&[&cg_text, "Enter"]);
    t.wait_for(8, "only the process in the cgroup", |s| {
        let rows = process_rows(s);
        s.contains(&format!(
            "cgroup filter: /{}",
            cg.strip_prefix(&root).unwrap().display()
        )) && rows.len() == 1
            && rows[0].0 == slow_pid
    });
    let (p_in, p_out) = (free_port(), free_port());
    let mut pairs: Vec<Child> = [(p_in, true), (p_out, false)]
        .iter()
        .map(|(p, inside)| {
            let join = if *inside {
                format!("echo $$ > {}/cgroup.procs && ", cg_text)
            } else {
                String::new()
            };
            Command::new("sh")
                .args([
                    "-c",
                    &format!(
                        "{join}exec {} tcp-pair 127.0.0.1 {p} 3000 10 10",
                        workload()
                    ),
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    let screen = t.wait_for(8, "the connection made in the cgroup", |s| {
        s.contains(&format!("127.0.0.1:{p_in} "))
    });
    assert!(!screen.contains(&format!(":{p_out} ")), "{screen}");
    for p in &mut pairs {
        p.wait().unwrap();
    }
    // The process table summed by cgroup (c): the cgroup's row, then back.
    t.keys(&["c"]);
    let rel = format!("/{}", cg.strip_prefix(&root).unwrap().display());
    t.wait_for(8, "the table by cgroup", |s| {
        s.contains("Top cgroups by syscalls")
            && s.lines()
                .any(|l| l.contains(&format!("│{rel} ")) || l.contains(&format!(" {rel} ")))
    });
    t.keys(&["c"]);
    t.wait_for(8, "the table by process", |s| {
        s.contains("Top processes by syscalls")
    });
    t.keys(&["g"]);
    let backspaces = vec!["BSpace"; cg_text.len()];
    t.keys(&backspaces);
    t.keys(&["Enter"]);
    t.wait_for(8, "cgroup filter cleared", |s| {
        s.contains("cgroup filter: off") && process_rows(s).iter().any(|r| r.0 == fast_pid)
    });

    // The port filter: of two connections held open at once, only the one on the
    // filtered port shows.
    let (p1, p2) = (free_port(), free_port());
    t.keys(&["f"]);
    t.keys(&[&p2.to_string(), "Enter"]);
    t.wait_for(5, "port filter set", |s| {
        s.contains(&format!("port filter: {p2}"))
    });
    let mut pairs: Vec<Child> = [p1, p2]
        .iter()
        .map(|p| {
            Command::new(workload())
                .args(["tcp-pair", "127.0.0.1", &p.to_string(), "3000", "10", "10"])
                .spawn()
                .unwrap()
        })
        .collect();
    let screen = t.wait_for(8, "the connection on the filtered port", |s| {
        s.contains(&format!("127.0.0.1:{p2} "))
    });
    assert!(!screen.contains(&format!(":{p1} ")), "{screen}");
    for p in &mut pairs {
        p.wait().unwrap();
    }
    t.keys(&[
        "f", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "Enter",
    ]);
    t.wait_for(5, "port filter cleared", |s| s.contains("port filter: off"));

    // q quits, restores the terminal and unloads everything.
    t.keys(&["q"]);
    let screen = t.wait_for(10, "exit and stty -a", |s| {
        s.contains("EXITED") && s.contains("icanon")
    });
    assert!(screen.contains("EXITED 0"), "{screen}");
    assert_terminal_restored(&screen, &t);
    assert_unloaded(&progs);
    fast.kill().ok();
    slow.kill().ok();
    fast.wait().ok();
    slow.wait().ok();
}

#[test]
fn a_panic_still_restores_the_terminal_and_unloads() {
    let bin = btrace_bin();
    let t = Tmux::start(
        "panic",
        &format!(
            "BTRACE_TOP_TEST_PANIC=1 {} top -i 0.5; echo EXITED $?; stty -a; sleep 60",
            bin.display()
        ),
    );
    let pid = t.child_pid();
    let progs = loop {
        let ids = prog_ids(pid);
        if ids.len() >= 13 {
            break ids;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let screen = t.wait_for(10, "exit and stty -a", |s| {
        s.contains("EXITED") && s.contains("icanon")
    });
    assert!(!screen.contains("EXITED 0"), "a panic must fail: {screen}");
    assert!(
        screen.contains("BTRACE_TOP_TEST_PANIC"),
        "panic message shown: {screen}"
    );
    assert_terminal_restored(&screen, &t);
    assert_unloaded(&progs);
}

/// With -c the dashboard keeps the terminal: a command that reads the terminal gets
/// /dev/null, so 'q' reaches the dashboard (and never the command).
#[test]
fn the_dashboard_owns_the_terminal() {
    let dir = std::env::temp_dir().join(format!("btrace-top-tty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let got = dir.join("got-q");
    let cmd = format!(
        "sh -c 'read x; [ \\\"$x\\\" = q ] && touch {}; sleep 30'",
        got.display()
    );
    let t = Tmux::start(
        "tty",
        &format!(
            "{} top -i 0.5 -c \"{cmd}\"; echo EXITED $?; sleep 60",
            btrace_bin().display()
        ),
    );
    t.wait_for(10, "the dashboard", |s| s.contains("Syscalls"));
    t.keys(&["q", "Enter"]);
    let screen = t.wait_for(10, "exit", |s| s.contains("EXITED"));
    assert!(screen.contains("EXITED 0"), "{screen}");
    assert!(!got.exists(), "the command read the dashboard's keys");
    std::fs::remove_dir_all(dir).ok();
}

/// The terminal going away (its window closed) ends the dashboard: no spinning on end of
/// file, nothing left running.
#[test]
fn a_terminal_that_goes_away_ends_the_dashboard() {
    let t = Tmux::start(
        "gone",
        &format!("{} top -i 0.5 -c 'sleep 60'", btrace_bin().display()),
    );
    let pid = t.child_pid();
    t.wait_for(10, "the dashboard", |s| s.contains("Syscalls"));
    let progs = prog_ids(pid);
    let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    drop(t); // kills the tmux server: the pane's terminal is gone
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "btrace top outlived its terminal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_unloaded(&progs);
    for k in kids.split_whitespace() {
        assert!(
            !std::path::Path::new(&format!("/proc/{k}")).exists(),
            "the command outlived the dashboard"
        );
    }
}

/// Removes a test cgroup once its processes are gone.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
