// SPDX-License-Identifier: Apache-2.0
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

/// The exits of a traced tree are events of `sched:sched_process_exit` like any other:
/// one per process forked in it, and the command's own. (The scope's exit program, run
/// first on the same tracepoint, took each process out of the tree before the user's
/// program saw its exit: 0 events.)
#[test]
fn every_exit_of_the_tree_is_an_event() {
    let cmd = format!("{} --wait tree 10", workload());
    let count = |tp: &str| {
        let (recs, code, _) = trace_to_end(&["tracepoint", "--json", tp, "-c", &cmd]);
        assert_eq!(code, 0);
        events(&recs).len()
    };
    let forks = count("sched:sched_process_fork");
    assert!(
        forks >= 4,
        "{forks} forks: the tree has children, a grandchild and a daemon"
    );
    assert_eq!(count("sched:sched_process_exit"), forks + 1);
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

// ---- Decoding: exactly what happened (issue 11) ----

/// The events of the workload's own process (not btrace's child before its exec).
fn workload_events(recs: &[Value]) -> Vec<&Value> {
    events(recs)
        .into_iter()
        .filter(|e| e["comm"] == "workload")
        .collect()
}

/// The bytes of a JSON value btrace lists under "escaped": `\\` is a backslash and
/// `\xNN` a byte (written here independently of btrace's own decoder).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                i += 2;
            }
            (b'\\', Some(b'x')) => {
                out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The strings of a record's "escaped" or "truncated" list.
fn listed(rec: &Value, list: &str) -> Vec<String> {
    rec[list]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The text lines of a traced run's events (header, Tracing and summary lines left out).
fn text_events(args: &[&str]) -> Vec<String> {
    let mut r = Running::start(args);
    r.wait_attached();
    r.send_line("go");
    r.stdin.take();
    let mut out = String::new();
    std::io::Read::read_to_string(r.child.stdout.as_mut().unwrap(), &mut out).unwrap();
    r.child.wait().unwrap();
    out.lines()
        .filter(|l| l.contains(" workload "))
        .map(str::to_string)
        .collect()
}

/// The 9 bytes `workload bytes` writes, from a longer buffer.
const WRITTEN: &[u8] = b"ab\0c\xff\n\\\"d";

#[test]
fn write_buffer_is_exactly_the_bytes_written() {
    let cmd = format!("{} --wait bytes", workload());
    let (recs, code, _) = trace_to_end(&[
        "tracepoint",
        "--json",
        "syscalls:sys_enter_write",
        "-c",
        &cmd,
    ]);
    assert_eq!(code, 0);
    let evs = workload_events(&recs);
    assert_eq!(evs.len(), 1, "{recs:?}");
    let e = evs[0];
    assert_eq!(e["args"]["count"], 9);
    // Not valid UTF-8 (0xff): the escaped form, and the record says so.
    assert_eq!(listed(e, "escaped"), ["buf"]);
    assert_eq!(e["args"]["buf"], "ab\u{0}c\\xff\n\\\\\"d");
    assert_eq!(unescape(e["args"]["buf"].as_str().unwrap()), WRITTEN);
    assert!(e.get("truncated").is_none(), "{e}");
    // Text: C escapes, exactly the 9 bytes.
    let lines = text_events(&["tracepoint", "syscalls:sys_enter_write", "-c", &cmd]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].ends_with(r#" buf="ab\x00c\xff\n\\\"d" count=9"#),
        "{}",
        lines[0]
    );
}

#[test]
fn read_buffer_at_entry_is_a_pointer() {
    let cmd = format!("{} --wait bytes", workload());
    let (recs, code, _) = trace_to_end(&[
        "tracepoint",
        "--json",
        "syscalls:sys_enter_read",
        "-c",
        &cmd,
    ]);
    assert_eq!(code, 0);
    let evs = workload_events(&recs);
    assert_eq!(evs.len(), 1, "{recs:?}");
    let buf = evs[0]["args"]["buf"].as_str().unwrap();
    assert!(
        buf.starts_with("0x") && u64::from_str_radix(&buf[2..], 16).is_ok_and(|p| p > 0),
        "the buffer is not filled at entry: its address, not bytes: {buf}"
    );
    assert_eq!(evs[0]["args"]["count"], 4);
}

#[test]
fn typedef_arguments_keep_their_sign() {
    let cmd = format!("{} --wait signed", workload());
    let (recs, code, _) = trace_to_end(&[
        "tracepoint",
        "--json",
        "syscalls:sys_enter_lseek",
        "-c",
        &cmd,
    ]);
    assert_eq!(code, 0);
    let evs = workload_events(&recs);
    assert_eq!(evs.len(), 1, "{recs:?}");
    assert_eq!(evs[0]["args"]["offset"], -5, "off_t is a long");
    assert_eq!(evs[0]["args"]["whence"], 1, "SEEK_CUR");
    let (recs, code, _) = trace_to_end(&[
        "tracepoint",
        "--json",
        "syscalls:sys_enter_timer_create",
        "-c",
        &cmd,
    ]);
    assert_eq!(code, 0);
    let evs = workload_events(&recs);
    assert_eq!(evs.len(), 1, "{recs:?}");
    assert_eq!(evs[0]["args"]["which_clock"], -6, "clockid_t is an int");
}

/// The path `workload long-path LEN` opens.
fn long_path(len: usize) -> String {
    let head = "/nonexistent-btrace/";
    let mut p = head.to_string();
    p.push_str(&"p".repeat(len - head.len() - 1));
    p.push('E');
    p
}

#[test]
fn long_strings_are_cut_exactly_and_marked() {
    let cmd = format!("{} --wait long-path 300", workload());
    let path = long_path(300);
    let open = |extra: &[&str]| {
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
        let evs = workload_events(&recs);
        assert_eq!(evs.len(), 1, "{recs:?}");
        evs[0].clone()
    };
    // Default: 256 bytes kept.
    let e = open(&[]);
    assert_eq!(e["args"]["filename"], path[..256]);
    assert_eq!(listed(&e, "truncated"), ["filename"]);
    let e = open(&["--string-size", "290"]);
    assert_eq!(e["args"]["filename"], path[..290]);
    assert_eq!(listed(&e, "truncated"), ["filename"]);
    // Exactly as long as the size: whole, not cut.
    let e = open(&["--string-size", "300"]);
    assert_eq!(e["args"]["filename"], path);
    assert!(e.get("truncated").is_none(), "{e}");
    let e = open(&["--string-size", "4096"]);
    assert_eq!(e["args"]["filename"], path);
    // Text: `...` after the closing quote.
    let lines = text_events(&[
        "tracepoint",
        "syscalls:sys_enter_openat",
        "--string-size",
        "16",
        "-c",
        &cmd,
    ]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!(" filename=\"{}\"... ", &path[..16])),
        "{}",
        lines[0]
    );
    // Out of range: one line naming the limits.
    for bad in ["5000", "15", "x"] {
        let e = one_line_error(&btrace(&[
            "tracepoint",
            "--string-size",
            bad,
            "sched:sched_switch",
        ]));
        assert!(e.contains("16") && e.contains("4096"), "{e}");
    }
}

#[test]
fn execve_argv_is_the_exact_list() {
    let w = workload();
    let cmd = format!("{w} --wait exec-args 7");
    let (recs, code, _) = trace_to_end(&[
        "tracepoint",
        "--json",
        "syscalls:sys_enter_execve",
        "-c",
        &cmd,
    ]);
    assert_eq!(code, 0);
    let evs = events(&recs);
    assert_eq!(
        evs.len(),
        2,
        "btrace starting -c, then the workload: {recs:?}"
    );
    // The -c command as btrace split it.
    assert_eq!(evs[0]["args"]["filename"], w.as_str());
    assert_eq!(
        evs[0]["args"]["argv"],
        serde_json::json!([w, "--wait", "exec-args", "7"])
    );
    let e = evs[1];
    assert_eq!(e["args"]["filename"], "/proc/self/exe");
    assert_eq!(
        e["args"]["argv"],
        serde_json::json!([
            "workload",
            "noop",
            "sp ace",
            "tab\tq\"uote\\",
            "\\xff\u{1}",
            "",
            "arg-6"
        ])
    );
    assert_eq!(listed(e, "escaped"), ["argv[4]"]);
    assert_eq!(
        unescape(e["args"]["argv"][4].as_str().unwrap()),
        b"\xff\x01"
    );
    assert_eq!(e["args"]["envp"], serde_json::json!(["BTRACE_ENV=1"]));
    assert!(e.get("truncated").is_none(), "{e}");
    // 25 arguments: the first 20, and the list marked cut.
    let cmd = format!("{w} --wait exec-args 25");
    let (recs, _, _) = trace_to_end(&[
        "tracepoint",
        "--json",
        "syscalls:sys_enter_execve",
        "-c",
        &cmd,
    ]);
    let e = workload_events(&recs)[0];
    let argv = e["args"]["argv"].as_array().unwrap();
    assert_eq!(argv.len(), 20);
    assert_eq!(argv[19], "arg-19");
    assert_eq!(listed(e, "truncated"), ["argv"]);
    // Text: a list of C-escaped strings.
    let cmd = format!("{w} --wait exec-args 6");
    let lines = text_events(&["tracepoint", "syscalls:sys_enter_execve", "-c", &cmd]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0]
            .contains(r#" argv=["workload", "noop", "sp ace", "tab\tq\"uote\\", "\xff\x01", ""] "#),
        "{}",
        lines[0]
    );
}

#[test]
fn tcp_states_by_name_addresses_as_text() {
    for (addr, port) in [("127.0.0.1", "21811"), ("::1", "21812")] {
        let cmd = format!("{} --wait tcp-pair {addr} {port} 10 5 6", workload());
        let (recs, code, _) = trace_to_end(&[
            "tracepoint",
            "--json",
            "sock:inet_sock_set_state",
            "-c",
            &cmd,
        ]);
        assert_eq!(code, 0);
        let port: u64 = port.parse().unwrap();
        // The client's SYN_SENT -> ESTABLISHED.
        let est: Vec<&Value> = events(&recs)
            .into_iter()
            .filter(|e| e["args"]["dport"] == port && e["args"]["newstate"] == "TCP_ESTABLISHED")
            .collect();
        assert_eq!(est.len(), 1, "{recs:?}");
        let e = est[0];
        assert_eq!(e["args"]["oldstate"], "TCP_SYN_SENT");
        assert_eq!(e["raw"]["oldstate"], 2);
        assert_eq!(e["raw"]["newstate"], 1);
        assert_eq!(e["args"]["protocol"], "IPPROTO_TCP");
        assert_eq!(e["raw"]["protocol"], 6);
        if addr == "::1" {
            assert_eq!(e["args"]["family"], "AF_INET6");
            assert_eq!(e["raw"]["family"], 10);
            assert_eq!(e["args"]["saddr_v6"], "::1");
            assert_eq!(e["args"]["daddr_v6"], "::1");
            assert_eq!(e["raw"]["daddr_v6"], "00000000000000000000000000000001");
        } else {
            assert_eq!(e["args"]["family"], "AF_INET");
            assert_eq!(e["raw"]["family"], 2);
            assert_eq!(e["args"]["saddr"], "127.0.0.1");
            assert_eq!(e["args"]["daddr"], "127.0.0.1");
            assert_eq!(e["raw"]["daddr"], "7f000001");
        }
        // Numbers not shown by name are not in raw.
        assert!(e["raw"].get("sport").is_none(), "{e}");
        assert_eq!(e["args"]["dport"], port);
    }
}

/// kmem:kmalloc's call site (%pS) as symbol+offset, checked against /proc/kallsyms read
/// here; its GFP flags by the names of the print format's table.
#[test]
fn kernel_addresses_and_flags_by_name() {
    let cmd = format!("{} --wait bytes", workload());
    let (recs, code, _) = trace_to_end(&["tracepoint", "--json", "kmem:kmalloc", "-c", &cmd]);
    assert_eq!(code, 0);
    let evs = events(&recs);
    assert!(
        !evs.is_empty(),
        "no kmalloc in an exec and three opens: {recs:?}"
    );
    let mut syms: Vec<(u64, String)> = std::fs::read_to_string("/proc/kallsyms")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let a = u64::from_str_radix(w[0], 16).ok()?;
            (a != 0 && matches!(w[1], "t" | "T" | "w" | "W")).then(|| (a, w[2].to_string()))
        })
        .collect();
    syms.sort_by_key(|s| s.0);
    let format = std::fs::read_to_string("/sys/kernel/tracing/events/kmem/kmalloc/format").unwrap();
    for e in evs {
        let site = e["raw"]["call_site"].as_u64().unwrap();
        let i = syms.partition_point(|s| s.0 <= site);
        let (start, name) = &syms[i - 1];
        let want = if site == *start {
            name.clone()
        } else {
            format!("{name}+0x{:x}", site - start)
        };
        // Symbols sharing an address may be named either way: compare the address.
        let shown = e["args"]["call_site"].as_str().unwrap();
        let (sym, off) = shown.split_once("+0x").unwrap_or((shown, "0"));
        let at = syms.iter().find(|s| s.1 == sym).map(|s| s.0);
        assert_eq!(
            at.map(|a| a + u64::from_str_radix(off, 16).unwrap()),
            Some(site),
            "{shown} is not {want}"
        );
        let gfp = e["args"]["gfp_flags"].as_str().unwrap();
        let raw = e["raw"]["gfp_flags"].as_u64().unwrap();
        if raw == 0 {
            assert_eq!(gfp, "none");
        }
        for part in gfp.split('|') {
            assert!(
                format.contains(&format!("\"{part}\"}}")) || part.starts_with("0x"),
                "{part} of {gfp} is not a GFP name"
            );
        }
        if raw == 0xcc0 {
            assert_eq!(gfp, "GFP_KERNEL");
        }
    }
}

/// A dev_t field as major,minor: ext4's fsync tracepoint against the file's own st_dev.
#[test]
fn dev_t_as_major_minor() {
    use std::os::unix::fs::MetadataExt;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let file = dir.join(format!("btrace-fsync-{}", std::process::id()));
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let ext4_root = mounts.lines().any(|l| {
        l.split_whitespace().nth(1) == Some("/") && l.split_whitespace().nth(2) == Some("ext4")
    });
    if !ext4_root || !std::path::Path::new("/sys/kernel/tracing/events/ext4").exists() {
        eprintln!("dev_t_as_major_minor: needs an ext4 root file system; not checked here");
        return;
    }
    let cmd = format!("{} --wait fsync {}", workload(), file.display());
    let (recs, code, _) = trace_to_end(&[
        "tracepoint",
        "--json",
        "ext4:ext4_sync_file_enter",
        "-c",
        &cmd,
    ]);
    assert_eq!(code, 0);
    let md = std::fs::metadata(&file).unwrap();
    let evs = workload_events(&recs);
    assert_eq!(evs.len(), 1, "{recs:?}");
    let dev = md.dev();
    assert_eq!(
        evs[0]["args"]["dev"],
        format!("{},{}", libc::major(dev), libc::minor(dev))
    );
    assert_eq!(evs[0]["args"]["ino"], md.ino());
    let raw = evs[0]["raw"]["dev"].as_u64().unwrap();
    assert_eq!(
        (raw >> 20, raw & 0xfffff),
        (libc::major(dev) as u64, libc::minor(dev) as u64)
    );
    std::fs::remove_file(file).ok();
}

#[test]
fn stack_on_sys_enter_openat_names_the_calling_function() {
    const K: usize = 4;
    let dir = tmpdir("stack");
    // The workload lives 1 s after its opens: user stacks are symbolized with the
    // maps read while the process lives.
    let cmd = format!("{} open {dir} {K} 1000", stackload());
    let out = btrace(&[
        "tracepoint",
        "--json",
        "--stack",
        "syscalls:sys_enter_openat",
        "-c",
        &cmd,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = parse_ndjson(&out.stdout);
    let mine: Vec<&Value> = events(&recs)
        .into_iter()
        .filter(|e| {
            e["args"]["filename"]
                .as_str()
                .is_some_and(|f| f.starts_with(&format!("{dir}/stackload-")))
        })
        .collect();
    assert_eq!(mine.len(), K, "{recs:?}");
    for e in &mine {
        assert!(stack_has(e, "user_stack", "open_here"), "{e}");
        assert!(stack_has(e, "user_stack", "main"), "{e}");
        assert!(
            e["kernel_stack"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f["name"] == "do_syscall_64")),
            "{e}"
        );
    }
    let s = summary(&recs);
    assert_eq!(s["stack_losses"]["user_fault"], 0);
    assert_eq!(s["stack_losses"]["user_truncated"], 0);
    // Without --stack, no stacks.
    let out = btrace(&[
        "tracepoint",
        "--json",
        "syscalls:sys_enter_openat",
        "-c",
        &cmd,
    ]);
    let recs = parse_ndjson(&out.stdout);
    assert!(events(&recs).iter().all(|e| e.get("user_stack").is_none()));
}

/// A lone event at a low rate reaches the output while tracing goes on, not only when it
/// ends: the kernel side batches its wakeups, and the consumer's poll timeout bounds how
/// long a record that woke nobody waits. The bound asserted is generous (the machine is
/// shared); the bench reports the latency measured.
#[test]
fn a_lone_event_is_shown_while_tracing() {
    // The shell asks for its parent too: only the workload's call is followed.
    let cmd = format!("/bin/sh -c '{} --wait rate 1 1; sleep 10'", workload());
    let mut r = Running::start(&[
        "tracepoint",
        "--json",
        "syscalls:sys_enter_getppid",
        "--comm",
        "workload",
        "-c",
        &cmd,
    ]);
    let ids = r.wait_attached();
    let stdout = r.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let sent = std::time::Instant::now();
    r.send_line("go");
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("the event was not shown within 5 s of the call");
    let latency = sent.elapsed();
    let rec: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(rec["type"], "event", "{line}");
    assert_eq!(rec["comm"], "workload", "{line}");
    assert!(
        latency < std::time::Duration::from_secs(1),
        "the event took {latency:?} to be shown"
    );
    r.signal(libc::SIGINT);
    let summary: Value = loop {
        let l = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("no summary after SIGINT");
        let v: Value = serde_json::from_str(&l).unwrap();
        if v["type"] == "summary" {
            break v;
        }
    };
    assert_eq!(summary["events"], 1, "{summary}");
    r.child.wait().unwrap();
    assert_unloaded(&ids);
}

/// `--buffer-size` sets the ring buffer: one page cannot hold a flat-out burst, and what
/// did not fit is counted, exactly: shown plus lost is every call.
#[test]
fn a_one_page_ring_loses_and_counts_every_loss() {
    const N: u64 = 200_000;
    let cmd = format!("{} --wait rate {N} 0", workload());
    let (recs, code, _) = trace_to_end(&[
        "tracepoint",
        "--json",
        "syscalls:sys_enter_getppid",
        "--buffer-size",
        "4K",
        "-c",
        &cmd,
    ]);
    assert_eq!(code, 0);
    let shown = events(&recs).len() as u64;
    let s = summary(&recs);
    let lost = s["lost"]["ringbuf"].as_u64().unwrap();
    assert_eq!(s["events"].as_u64(), Some(shown), "{s}");
    assert_eq!(shown + lost, N, "{s}");
    assert!(lost > 0, "a 4 KiB ring held a flat-out burst of {N}: {s}");
}

#[test]
fn buffer_size_is_checked() {
    for (size, want) in [
        ("0", "more than 0"),
        ("4X", "not a size in bytes"),
        ("2G", "at most 1G"),
    ] {
        let out = btrace(&[
            "tracepoint",
            "syscalls:sys_enter_getppid",
            "--buffer-size",
            size,
        ]);
        let e = one_line_error(&out);
        assert!(e.contains(want), "{size}: {e}");
    }
}
