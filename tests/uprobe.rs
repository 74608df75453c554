// SPDX-License-Identifier: Apache-2.0
//! `btrace uprobe` and `btrace usdt` on this machine (uprobes work on the development
//! kernel): exact calls of known functions of target/ufuncs (tests/workload/ufuncs.c),
//! named and typed from DWARF, return values, the latency histogram, libc's malloc, a
//! USDT probe, and the one-line errors.

mod common;

use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

/// The events and summary of one run of btrace with `args`, its -c command `cmd`.
fn run(args: &[&str], cmd: &str) -> (Vec<Value>, Value) {
    let mut all = args.to_vec();
    all.extend(["--json", "-c", cmd]);
    let (recs, code, stderr) = trace_to_end(&all);
    assert_eq!(code, 0, "{stderr:?}");
    let s = summary(&recs).clone();
    (recs, s)
}

fn events(recs: &[Value]) -> Vec<&Value> {
    of_type(recs, "event")
}

/// What f(a, b, s) gets on call i of `ufuncs f n`.
fn f_args(i: i64, n: i64) -> Value {
    let s = if i == n - 1 {
        "x".repeat(256)
    } else {
        format!("s-{i}")
    };
    json!({"a": i - 2, "b": -1_000_000_000_000i64 * i + 7, "s": s})
}

#[test]
fn every_call_with_named_typed_args() {
    const N: i64 = 7;
    let u = ufuncs();
    let (recs, sum) = run(&["uprobe", &format!("{u}:f")], &format!("{u} wait f {N}"));
    let ev = events(&recs);
    assert_eq!(ev.len(), N as usize, "{recs:?}");
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e["args"], f_args(i as i64, N), "{e}");
        assert_eq!(e["hook"], "uprobe");
        assert_eq!(e["comm"], "ufuncs");
        // The last string is longer than the string size: cut and marked.
        let cut = i as i64 == N - 1;
        assert_eq!(e.get("truncated").is_some(), cut, "{e}");
        if cut {
            assert_eq!(e["truncated"], json!(["s"]));
        }
        assert!(e.get("ret").is_none());
    }
    assert_eq!(sum["events"], N);
    assert_eq!(sum["dwarf"], true);
    assert_eq!(
        sum["lost"],
        json!({"ringbuf": 0, "map_full": 0, "no_entry": 0, "missed": 0})
    );
}

#[test]
fn stack_names_the_caller() {
    const N: i64 = 3;
    let u = ufuncs();
    // fstay: the process stays 1 s after its calls, so its maps are read while it lives.
    let (recs, sum) = run(
        &["uprobe", &format!("{u}:f"), "--stack"],
        &format!("{u} wait fstay {N}"),
    );
    let ev = events(&recs);
    assert_eq!(ev.len(), N as usize, "{recs:?}");
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e["args"], f_args(i as i64, N), "{e}");
        // The innermost frame is the probed address, in ufuncs. (At f's first instruction
        // its frame is not built yet: a kernel that does not fix up the stack of a uprobe
        // at a function's entry skips do_f; main is there on every kernel.)
        let top = &e["user_stack"][0];
        assert!(
            top["module"]
                .as_str()
                .is_some_and(|m| m.ends_with("/ufuncs")),
            "{e}"
        );
        assert_eq!(top["file"], "ufuncs.c", "{e}");
        // A C function named as written (a demangler reading every name as C++ made `f`
        // the type `float`).
        assert_eq!(top["name"], "f", "{e}");
        assert!(stack_has(e, "user_stack", "main"), "{e}");
        // A uprobe fires in user mode: no kernel stack is walked or shown.
        assert!(e.get("kernel_stack").is_none(), "{e}");
    }
    assert_eq!(sum["stack_losses"]["user_fault"], 0, "{sum}");
    assert_eq!(sum["stack_losses"]["map_full"], 0, "{sum}");
    // --stack with --hist or --count: one line, non-zero exit.
    for extra in ["--hist", "--count"] {
        let o = btrace(&["uprobe", &format!("{u}:f"), "--stack", extra]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("--stack"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn ret_gives_the_known_return_values() {
    const N: i64 = 5;
    let u = ufuncs();
    let (recs, sum) = run(
        &["uprobe", &format!("{u}:f"), "--ret"],
        &format!("{u} wait f {N}"),
    );
    let ev = events(&recs);
    assert_eq!(ev.len(), N as usize, "{recs:?}");
    for (i, e) in ev.iter().enumerate() {
        let a = i as i64 - 2;
        assert_eq!(e["args"]["a"], a);
        assert_eq!(e["ret"], 2 * a - 1, "{e}");
        assert!(e["latency_ns"].as_u64().unwrap() > 0, "{e}");
    }
    assert_eq!(sum["lost"]["no_entry"], 0);
}

#[test]
fn hist_totals_every_call() {
    const N: u64 = 2000;
    let u = ufuncs();
    let (recs, sum) = run(
        &["uprobe", &format!("{u}:f"), "--hist"],
        &format!("{u} wait f {N}"),
    );
    assert!(events(&recs).is_empty(), "--hist sends no events");
    let h = of_type(&recs, "hist");
    assert_eq!(h.len(), 1, "{recs:?}");
    assert_eq!(h[0]["count"], N);
    assert_eq!(h[0]["total"], N);
    let in_buckets: u64 = h[0]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(in_buckets, N, "{}", h[0]);
    assert!(h[0]["sum_ns"].as_u64().unwrap() > 0);
    assert_eq!(
        sum["lost"],
        json!({"ringbuf": 0, "map_full": 0, "no_entry": 0, "missed": 0})
    );
}

/// libc's malloc, found by library name. ufuncs uses no stdio, and libc allocates
/// nothing of its own at start-up in it (measured: exactly K events), but other libc
/// builds may; so: every known size exactly once, and nothing else from `malloc K`'s
/// loop.
#[test]
fn libc_malloc_by_library_name() {
    const K: u64 = 6;
    let u = ufuncs();
    let (recs, sum) = run(&["uprobe", "libc:malloc"], &format!("{u} wait malloc {K}"));
    let ev = events(&recs);
    let sizes: Vec<u64> = ev
        .iter()
        .map(|e| e["args"]["arg0"].as_u64().unwrap_or(0))
        .collect();
    for i in 0..K {
        let n = sizes.iter().filter(|&&s| s == 100_000 + i).count();
        assert_eq!(n, 1, "size {} in {sizes:?}", 100_000 + i);
    }
    assert!(ev.len() as u64 >= K);
    assert_eq!(sum["dwarf"], false);
    assert!(sum["target"].as_str().unwrap().contains("libc.so"), "{sum}");
}

/// A stripped copy, traced at f's address: no DWARF, so six integer registers.
#[test]
fn stripped_binary_by_address_gives_registers() {
    let u = ufuncs();
    let nm = Command::new("nm").arg(&u).output().unwrap();
    let addr = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .find(|l| l.ends_with(" T f"))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .unwrap();
    let dir = std::env::temp_dir().join(format!("btrace-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stripped = dir.join("ufuncs");
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&u)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let s = stripped.to_string_lossy().into_owned();
    let e = one_line_error(&btrace(&["uprobe", &format!("{s}:f")]));
    assert!(e.contains("stripped"), "{e}");
    let (recs, sum) = run(
        &["uprobe", &format!("{s}:0x{addr}")],
        &format!("{s} wait f 3"),
    );
    let ev = events(&recs);
    assert_eq!(ev.len(), 3, "{recs:?}");
    for (i, e) in ev.iter().enumerate() {
        // An int in a 64-bit register: only its low half is defined by the ABI.
        let a = e["args"]["arg0"].as_i64().unwrap() as i32;
        assert_eq!(a as i64, i as i64 - 2, "{e}");
        assert_eq!(e["args"]["arg1"], -1_000_000_000_000i64 * i as i64 + 7);
        assert!(e["args"].get("arg5").is_some());
    }
    assert_eq!(sum["dwarf"], false);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn usdt_probe_exact_hits_and_list() {
    const N: i64 = 4;
    let u = ufuncs();
    let out = btrace(&["usdt", &u, "--list", "--json"]);
    assert!(out.status.success());
    let list = parse_ndjson(&out.stdout);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (&list[0]["provider"], &list[0]["name"]),
        (&json!("btrace_test"), &json!("tick"))
    );
    assert_eq!(list[0]["args"].as_array().unwrap().len(), 3);
    let (recs, sum) = run(
        &["usdt", &format!("{u}:btrace_test:tick")],
        &format!("{u} wait usdt {N}"),
    );
    let ev = events(&recs);
    assert_eq!(ev.len(), N as usize, "{recs:?}");
    for (i, e) in ev.iter().enumerate() {
        let i = i as i64;
        assert_eq!(
            e["args"],
            json!({"arg0": i, "arg1": -i - 1, "arg2": 1_000_000 * i}),
            "{e}"
        );
        assert_eq!(e["hook"], "usdt");
    }
    assert_eq!(sum["events"], N);
}

#[test]
fn errors_are_one_line() {
    let u = ufuncs();
    let e = one_line_error(&btrace(&["uprobe", &format!("{u}:no_such_function")]));
    assert!(e.contains("no function 'no_such_function'"), "{e}");
    let e = one_line_error(&btrace(&["uprobe", "/etc/passwd:f"]));
    assert!(e.contains("is not an ELF file"), "{e}");
    let e = one_line_error(&btrace(&["uprobe", "/nonexistent/btrace:f"]));
    assert!(e.contains("no such file: /nonexistent/btrace"), "{e}");
    let e = one_line_error(&btrace(&["uprobe", "no_such_lib_btrace:f"]));
    assert!(
        e.contains("no library or program 'no_such_lib_btrace'"),
        "{e}"
    );
    let e = one_line_error(&btrace(&["uprobe", &u]));
    assert!(e.contains("not TARGET:FUNC"), "{e}");
    // A missing argument is named on the one line (clap lists it on a line of its own).
    let e = one_line_error(&btrace(&["uprobe"]));
    assert!(
        e.contains("required arguments were not provided: <TARGET:FUNC>"),
        "{e}"
    );
    let e = one_line_error(&btrace(&["usdt", &format!("{u}:nope:nothing")]));
    assert!(e.contains("no USDT probe nope:nothing"), "{e}");
    let e = one_line_error(&btrace(&["uprobe", &format!("{u}:f"), "-i", "1"]));
    assert!(e.contains("needs --hist"), "{e}");
}

/// A process started before btrace, traced with -p: it is released (a line on its stdin)
/// once btrace has attached, and btrace ends when it exits.
fn trace_pid(btrace_args: &[&str], child: &mut std::process::Child) -> (Vec<Value>, Value) {
    trace_pid_after(btrace_args, child, || {})
}

/// [`trace_pid`], running `while_attached` once btrace has attached, before the traced
/// process is released.
fn trace_pid_after(
    btrace_args: &[&str],
    child: &mut std::process::Child,
    while_attached: impl FnOnce(),
) -> (Vec<Value>, Value) {
    let pid = child.id().to_string();
    let mut all = btrace_args.to_vec();
    all.extend(["--json", "-p", &pid]);
    let mut r = Running::start(&all);
    r.wait_attached();
    while_attached();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "go").unwrap();
    assert!(child.wait().unwrap().success());
    let (recs, code, stderr) = r.finish();
    assert_eq!(code, 0, "{stderr:?}");
    let s = summary(&recs).clone();
    (recs, s)
}

/// -p: the library is the one the process maps (found in /proc/PID/maps, opened through
/// /proc/PID/root).
#[test]
fn pid_library_from_its_maps() {
    const K: u64 = 4;
    let mut child = Command::new(ufuncs())
        .args(["wait", "malloc", &K.to_string()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    // Its libc is mapped once the dynamic linker is done: before `wait` polls.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (recs, sum) = trace_pid(&["uprobe", "libc:malloc"], &mut child);
    let root = format!("/proc/{}/root/", child.id());
    assert!(sum["target"].as_str().unwrap().starts_with(&root), "{sum}");
    let sizes: Vec<u64> = events(&recs)
        .iter()
        .map(|e| e["args"]["arg0"].as_u64().unwrap_or(0))
        .collect();
    for i in 0..K {
        assert_eq!(
            sizes.iter().filter(|&&s| s == 100_000 + i).count(),
            1,
            "{sizes:?}"
        );
    }
}

/// A binary that exists only in another mount namespace (a tmpfs mounted there), traced
/// with -p by the path it has inside: found through /proc/PID/root.
#[test]
fn binary_in_another_mount_namespace() {
    const N: usize = 3;
    let dir = std::env::temp_dir().join(format!("btrace-mntns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_string_lossy().into_owned();
    let script = format!(
        "mount -t tmpfs none {d} && cp {} {d}/ufuncs && exec {d}/ufuncs wait f {N}",
        ufuncs()
    );
    let mut child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let inside = format!("{d}/ufuncs");
    // Wait until the exec happened (the process's exe is the copy).
    for _ in 0..100 {
        let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap_or_default();
        if exe.to_string_lossy() == inside {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !std::path::Path::new(&inside).exists(),
        "the copy is visible on the host"
    );
    let (recs, sum) = trace_pid(&["uprobe", &format!("{inside}:f")], &mut child);
    assert_eq!(events(&recs).len(), N, "{recs:?}");
    assert_eq!(events(&recs)[0]["args"]["a"], -2);
    assert!(
        sum["target"].as_str().unwrap().starts_with("/proc/"),
        "{sum}"
    );
    std::fs::remove_dir(&dir).ok();
}

/// usdt -p: the probe attached for that one process (libbpf's only way on kernels without
/// BPF cookies), exact hits.
#[test]
fn usdt_with_pid() {
    let mut child = Command::new(ufuncs())
        .args(["wait", "usdt", "3"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let probe = format!("{}:btrace_test:tick", ufuncs());
    let (recs, sum) = trace_pid(&["usdt", &probe], &mut child);
    assert_eq!(events(&recs).len(), 3, "{recs:?}");
    assert_eq!(events(&recs)[2]["args"]["arg1"], -3);
    assert_eq!(sum["events"], 3);
}

/// --count: calls per function counted in the kernel, for one function and for a glob;
/// a glob beyond the bound of attach points is one line.
#[test]
fn count_per_function_and_glob() {
    let u = ufuncs();
    let (recs, _) = run(
        &["uprobe", &format!("{u}:f"), "--count"],
        &format!("{u} wait f 9"),
    );
    let c = of_type(&recs, "count");
    assert_eq!(c.len(), 1, "{recs:?}");
    assert_eq!((&c[0]["func"], &c[0]["count"]), (&json!("f"), &json!(9)));
    const K: u64 = 5;
    let (recs, sum) = run(
        &["uprobe", "libc:malloc*", "--count"],
        &format!("{u} wait malloc {K}"),
    );
    assert!(sum["functions"].as_u64().unwrap() > 1, "{sum}");
    let malloc: Vec<_> = of_type(&recs, "count")
        .into_iter()
        .filter(|r| r["func"] == "malloc")
        .collect();
    assert_eq!(malloc.len(), 1, "{recs:?}");
    assert_eq!(malloc[0]["count"], K, "{recs:?}");
    let e = one_line_error(&btrace(&["uprobe", "libc:*", "--count"]));
    assert!(e.contains("at most 1000"), "{e}");
    let e = one_line_error(&btrace(&["uprobe", &format!("{u}:zz*"), "--count"]));
    assert!(e.contains("no function"), "{e}");
}

/// --no-children binds the uprobes to the one process (only it traps): another process
/// calling the same function at the same time is not counted, and the traced one's calls
/// are all there, for the event, --hist and --count paths.
#[test]
fn no_children_binds_the_probe_to_the_process() {
    let u = ufuncs();
    for (mode, n) in [("", 6u64), ("--hist", 7), ("--count", 8)] {
        let mut child = Command::new(&u)
            .args(["wait", "f", &n.to_string()])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut other = Command::new(&u)
            .args(["wait", "f", "50"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let probe = format!("{u}:f");
        let mut args = vec!["uprobe", probe.as_str(), "--no-children"];
        if !mode.is_empty() {
            args.push(mode);
        }
        // The other process calls f while btrace is attached: released first, waited for
        // before the traced one is released.
        let (recs, _) = trace_pid_after(&args, &mut child, || {
            use std::io::Write;
            writeln!(other.stdin.take().unwrap(), "go").unwrap();
            assert!(other.wait().unwrap().success());
        });
        let got = match mode {
            "" => events(&recs).len() as u64,
            "--hist" => of_type(&recs, "hist")[0]["count"].as_u64().unwrap(),
            _ => of_type(&recs, "count")[0]["count"].as_u64().unwrap(),
        };
        assert_eq!(got, n, "{mode}: {recs:?}");
    }
}

/// Where each instruction of `func` in `bin` starts, as offsets from the function, read
/// with objdump (an oracle independent of btrace's decoder).
fn instruction_offsets(bin: &str, func: &str) -> Vec<u64> {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn", bin])
        .output()
        .expect("objdump (binutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let head = format!("<{func}>:");
    let mut lines = text.lines().skip_while(|l| !l.ends_with(&head));
    let start = u64::from_str_radix(lines.next().unwrap().split(' ').next().unwrap(), 16).unwrap();
    lines
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.trim().split(':').next())
        .filter_map(|a| u64::from_str_radix(a, 16).ok())
        .map(|a| a - start)
        .collect()
}

/// A uprobe inside an instruction would rewrite that instruction in every process running
/// f (ufuncs crashed with SIGSEGV): refused before anything is attached, naming the
/// instruction and the valid offsets around it, and a process calling f meanwhile and
/// after runs as normal. A non-zero offset that starts an instruction still counts every
/// call.
#[test]
fn mid_instruction_offset_refused_code_unharmed() {
    const N: usize = 5;
    let u = ufuncs();
    let starts = instruction_offsets(&u, "f");
    // The first offset inside a multi-byte instruction.
    let i = (0..starts.len() - 1)
        .find(|&i| starts[i + 1] - starts[i] > 1)
        .unwrap();
    let (inside, from, next) = (starts[i] + 1, starts[i], starts[i + 1]);
    let probe = format!("{u}:f+{inside}");
    // A process about to call f, released while btrace runs (or would run: without the
    // check it attached, and f's calls crashed).
    let mut child = Command::new(&u)
        .args(["wait", "f", &N.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let tracer = std::thread::spawn(move || btrace(&["uprobe", &probe, "-d", "2"]));
    std::thread::sleep(std::time::Duration::from_millis(1000));
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "go").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ufuncs f: {:?}", out.status);
    assert!(out.stdout.is_empty());
    let o = tracer.join().unwrap();
    let err = one_line_error(&o);
    assert!(!err.contains("Tracing"), "{err}");
    let want = format!(
        "f+{inside} is inside the instruction at f+{from} ({} bytes)",
        next - from
    );
    assert!(err.contains(&want), "{err}\nwant: {want}");
    assert!(
        err.contains(&format!("valid offsets near it: f+{from}")),
        "{err}"
    );
    // After the refusal too.
    let after = Command::new(&u).args(["f", "3"]).status().unwrap();
    assert!(after.success(), "{after:?}");
    // The instruction after it: every call counted.
    let (recs, sum) = run(
        &["uprobe", &format!("{u}:f+{next}")],
        &format!("{u} wait f {N}"),
    );
    assert_eq!(events(&recs).len(), N, "{recs:?}");
    assert_eq!(sum["offset"].as_u64().unwrap() % 4096, {
        let nm = Command::new("nm").arg(&u).output().unwrap();
        let f = String::from_utf8_lossy(&nm.stdout)
            .lines()
            .find(|l| l.ends_with(" T f"))
            .map(|l| u64::from_str_radix(l.split(' ').next().unwrap(), 16).unwrap())
            .unwrap();
        (f + next) % 4096
    });
}

/// Addresses outside code: 0x0 (the ELF header), a data symbol's, an offset past the end
/// of f: refused, one line each.
#[test]
fn addresses_outside_code_refused() {
    let u = ufuncs();
    let nm = Command::new("nm").arg(&u).output().unwrap();
    let data = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .find(|l| l.ends_with(" D __data_start"))
        .map(|l| {
            l.split(' ')
                .next()
                .unwrap()
                .trim_start_matches('0')
                .to_string()
        })
        .unwrap();
    let e = one_line_error(&btrace(&["uprobe", &format!("{u}:0x0"), "-d", "1"]));
    assert!(e.contains("0x0 is not in executable code"), "{e}");
    let e = one_line_error(&btrace(&["uprobe", &format!("{u}:0x{data}"), "-d", "1"]));
    assert!(e.contains("not in executable code"), "{e}");
    assert!(e.contains("section .data"), "{e}");
    let e = one_line_error(&btrace(&["uprobe", &format!("{u}:f+100000"), "-d", "1"]));
    assert!(e.contains("is past the end of f"), "{e}");
    // --count resolves the same way.
    let e = one_line_error(&btrace(&["uprobe", &format!("{u}:0x0"), "--count"]));
    assert!(e.contains("not in executable code"), "{e}");
}

/// Kernel memory: sizes that would take 1.6 GB (each call in flight keeps a whole event of
/// three 4 KB strings and the stacks) are refused before loading, naming the flag and a
/// value that fits; 70 MB is said in one line and the run goes on, every call counted; the
/// default sizes say nothing.
#[test]
fn kernel_memory_said_and_capped() {
    let u = ufuncs();
    let f = format!("{u}:f");
    let big = [
        "uprobe",
        &f,
        "--stack",
        "--ret",
        "--string-size",
        "4096",
        "--max-inflight",
        "262144",
        "-d",
        "1",
    ];
    let e = one_line_error(&btrace(&big));
    assert!(!e.contains("Tracing"), "{e}");
    assert!(e.contains("above the limit of"), "{e}");
    assert!(e.contains("--max-inflight 262144 (map inflight"), "{e}");
    assert!(e.contains("give --max-inflight 131072 or less"), "{e}");
    assert!(!e.contains("cannot place"), "{e}");
    // Between the warning and the limit: said before Tracing, and traced.
    let mid = format!("{u} wait f 4");
    let (recs, code, stderr) = trace_to_end(&[
        "uprobe",
        &f,
        "--ret",
        "--string-size",
        "4096",
        "--max-inflight",
        "16384",
        "--json",
        "-c",
        &mid,
    ]);
    assert_eq!(code, 0, "{stderr:?}");
    assert!(
        stderr[0].contains("of kernel memory") && stderr[0].contains("--max-inflight 16384"),
        "{stderr:?}"
    );
    assert!(stderr[1].starts_with("Tracing"), "{stderr:?}");
    assert_eq!(events(&recs).len(), 4);
    let (_, code, stderr) = trace_to_end(&["uprobe", &f, "--ret", "--json", "-c", &mid]);
    assert_eq!(code, 0, "{stderr:?}");
    assert!(
        !stderr.iter().any(|l| l.contains("kernel memory")),
        "{stderr:?}"
    );
}

/// A copy of btrace and target/ufuncs in a directory of their own that every user can
/// read (the worktree may not be), for runs as another user.
fn public_copies(tag: &str) -> (std::path::PathBuf, String, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("btrace-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("btrace");
    let u = dir.join("ufuncs");
    std::fs::copy(common::btrace_bin(), &bin).unwrap();
    std::fs::copy(ufuncs(), &u).unwrap();
    for p in [&dir, &bin, &u] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    (dir.clone(), s(&bin), s(&u))
}

/// btrace as user nobody with only CAP_BPF and CAP_PERFMON (setpriv), `-c cmd` as nobody.
fn as_nobody_with_bpf_caps(bin: &str, args: &[&str], cmd: &str) -> (Vec<Value>, String) {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all,+bpf,+perfmon",
            "--ambient-caps=+bpf,+perfmon",
            "--bounding-set=-all,+bpf,+perfmon",
            bin,
        ])
        .args(args)
        .args(["--json", "-c", cmd])
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?} as nobody: {err}");
    (parse_ndjson(&out.stdout), err)
}

/// With only CAP_BPF and CAP_PERFMON (not root, no CAP_SYS_ADMIN) uprobe works through
/// uprobe_multi links, for events and --count, and usdt too: exact calls. (Perf-event
/// uprobes need CAP_SYS_ADMIN: before uprobe_multi was used, uprobe failed here with
/// "Permission denied".)
#[test]
fn uprobe_and_usdt_with_only_bpf_and_perfmon() {
    let (dir, bin, u) = public_copies("caps");
    let (recs, err) =
        as_nobody_with_bpf_caps(&bin, &["uprobe", &format!("{u}:f")], &format!("{u} f 7"));
    assert_eq!(events(&recs).len(), 7, "{err}");
    assert_eq!(events(&recs)[6]["args"]["a"], 4, "{recs:?}");
    assert_eq!(summary(&recs)["attach"], "uprobe.multi", "{recs:?}");
    let (recs, err) = as_nobody_with_bpf_caps(
        &bin,
        &["uprobe", &format!("{u}:f"), "--count"],
        &format!("{u} f 9"),
    );
    let c = of_type(&recs, "count");
    assert_eq!(c.len(), 1, "{err} {recs:?}");
    assert_eq!((&c[0]["func"], &c[0]["count"]), (&json!("f"), &json!(9)));
    let (recs, err) = as_nobody_with_bpf_caps(
        &bin,
        &["usdt", &format!("{u}:btrace_test:tick")],
        &format!("{u} usdt 4"),
    );
    assert_eq!(events(&recs).len(), 4, "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Every function of libc at once (about 2000): a few uprobe_multi links, so it attaches
/// and detaches in seconds (5 to 10 s here on a quiet machine; the bound only catches a
/// hang or the old minutes: 188 s, then a failure, before uprobe_multi. Each breakpoint
/// goes into every process mapping libc, so a machine busy with compilers takes longer:
/// 32 s once under a load average of 13), counts malloc exactly, and names each function
/// the kernel refuses (skipped, not fatal).
#[test]
fn count_every_libc_function() {
    const K: u64 = 5;
    let u = ufuncs();
    let started = std::time::Instant::now();
    let (recs, code, stderr) = trace_to_end(&[
        "uprobe",
        "libc:*",
        "--count",
        "--max-probes",
        "10000",
        "--json",
        "-c",
        &format!("{u} wait malloc {K}"),
    ]);
    let took = started.elapsed();
    assert_eq!(code, 0, "{stderr:?}");
    assert!(took.as_secs() < 90, "start to exit took {took:?}");
    let sum = summary(&recs);
    let functions = sum["functions"].as_u64().unwrap();
    let refused = sum["refused"].as_u64().unwrap();
    assert!(functions > 1000, "{sum}");
    assert_eq!(sum["hook"], "uprobe.multi", "{sum}");
    let malloc: Vec<_> = of_type(&recs, "count")
        .into_iter()
        .filter(|r| r["func"] == "malloc")
        .collect();
    assert_eq!(malloc.len(), 1, "{stderr:?}");
    assert_eq!(malloc[0]["count"], K, "{recs:?}");
    // Each refused function named with its errno and what it means; one note line.
    let listed = sum["refused_functions"].as_array().unwrap();
    assert_eq!(listed.len() as u64, refused, "{sum}");
    for r in listed {
        assert!(r["func"].is_string() && r["errno"].is_i64(), "{r}");
        assert!(r["meaning"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
    }
    let notes: Vec<_> = stderr.iter().filter(|l| l.contains("refused")).collect();
    assert_eq!(notes.len(), usize::from(refused > 0) * 2, "{stderr:?}");
}
