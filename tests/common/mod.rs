// SPDX-License-Identifier: Apache-2.0
//! Shared pieces of the integration tests: running btrace against the real kernel,
//! the static workload helper, and checking that no BPF program outlives btrace.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Once;
use std::time::Duration;

use serde_json::Value;

pub mod agent;
pub mod dist;
pub mod net;

pub fn btrace_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_btrace"))
}

/// target/workload, built by the Makefile (built here too when missing).
pub fn workload() -> String {
    static BUILD: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("target/workload");
    BUILD.call_once(|| {
        let ok = Command::new("make")
            .args(["-s", "target/workload"])
            .current_dir(&root)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "building target/workload failed");
    });
    path.to_string_lossy().into_owned()
}

/// target/ufuncs (tests/workload/ufuncs.c: user-space functions with known calls, dynamic,
/// with DWARF), built by the Makefile (built here too when missing).
pub fn ufuncs() -> String {
    static BUILD: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    BUILD.call_once(|| {
        let ok = Command::new("make")
            .args(["-s", "target/ufuncs"])
            .current_dir(&root)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "building target/ufuncs failed");
    });
    root.join("target/ufuncs").to_string_lossy().into_owned()
}

/// target/stackload (known stacks: frame pointers, debug info), built by the Makefile (built
/// here too when missing).
pub fn stackload() -> String {
    static BUILD: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("target/stackload");
    BUILD.call_once(|| {
        let ok = Command::new("make")
            .args(["-s", "target/stackload"])
            .current_dir(&root)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "building target/stackload failed");
    });
    path.to_string_lossy().into_owned()
}

/// Whether a stack record (`profile`/`offcpu` JSON, or an event with --stack) has a frame
/// named `name` on side `side` ("user_stack" or "kernel_stack").
pub fn stack_has(rec: &Value, side: &str, name: &str) -> bool {
    rec[side]
        .as_array()
        .is_some_and(|frames| frames.iter().any(|f| f["name"] == name))
}

/// Runs btrace to completion.
pub fn btrace(args: &[&str]) -> Output {
    Command::new(btrace_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running btrace")
}

/// Runs btrace to completion, which must come within `limit`: past it btrace is killed
/// and the test fails (a btrace blocked for ever fails rather than hangs the test).
pub fn btrace_within(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(btrace_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting btrace");
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let err = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
            panic!("btrace {args:?} still running after {limit:?}; stderr: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

pub fn parse_ndjson(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

pub fn of_type<'a>(records: &'a [Value], ty: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == ty).collect()
}

pub fn summary(records: &[Value]) -> &Value {
    let s = of_type(records, "summary");
    assert_eq!(s.len(), 1, "exactly one summary expected: {records:?}");
    assert_eq!(
        records.last().unwrap()["type"],
        "summary",
        "summary comes last"
    );
    s[0]
}

/// IDs of the BPF programs a process holds open (from /proc/PID/fdinfo).
pub fn prog_ids(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for e in dir.flatten() {
        if let Ok(info) = std::fs::read_to_string(e.path()) {
            for l in info.lines() {
                if let Some(v) = l.strip_prefix("prog_id:") {
                    if let Ok(id) = v.trim().parse() {
                        ids.push(id);
                    }
                }
            }
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

/// True if a BPF program with this id is still loaded anywhere.
pub fn prog_loaded(id: u32) -> bool {
    // SAFETY: plain syscall wrapper; a returned fd is closed at once.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd >= 0 {
        // SAFETY: `fd` was just opened here and is used nowhere else.
        unsafe { libc::close(fd) };
        return true;
    }
    false
}

pub fn assert_unloaded(ids: &[u32]) {
    // Programs are freed asynchronously (RCU) after the last reference goes; on a loaded
    // 2-CPU machine (VMs booting beside the tests) that has taken over a second.
    for _ in 0..500 {
        if ids.iter().all(|&id| !prog_loaded(id)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<_> = ids.iter().filter(|&&id| prog_loaded(id)).collect();
    panic!("BPF programs still loaded after btrace exited: {left:?}");
}

/// A btrace running in the background: stderr is watched for the `Tracing` line.
pub struct Running {
    pub child: Child,
    stderr_lines: Receiver<String>,
    pub stderr_seen: Vec<String>,
    pub stdin: Option<ChildStdin>,
}

impl Running {
    pub fn start(args: &[&str]) -> Running {
        let mut child = Command::new(btrace_bin())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting btrace");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Running {
            child,
            stderr_lines: rx,
            stderr_seen: Vec::new(),
            stdin,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the `Tracing ...` line; returns the ids of the programs btrace holds then.
    pub fn wait_attached(&mut self) -> Vec<u32> {
        loop {
            match self.stderr_lines.recv_timeout(Duration::from_secs(20)) {
                Ok(l) => {
                    let done = l.starts_with("Tracing");
                    self.stderr_seen.push(l);
                    if done {
                        let ids = prog_ids(self.pid());
                        assert!(
                            !ids.is_empty(),
                            "btrace holds no BPF programs while tracing"
                        );
                        return ids;
                    }
                }
                Err(_) => panic!("btrace never said Tracing; stderr: {:?}", self.stderr_seen),
            }
        }
    }

    /// Takes the stderr lines that arrive until none comes for `wait`.
    pub fn collect_stderr(&mut self, wait: Duration) {
        while let Ok(l) = self.stderr_lines.recv_timeout(wait) {
            self.stderr_seen.push(l);
        }
    }

    /// Sends a line on btrace's stdin (a -c command inherits it).
    pub fn send_line(&mut self, s: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{s}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill only sends a signal, to the btrace child this handle owns.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Waits for exit; returns (records, exit code, stderr lines).
    pub fn finish(mut self) -> (Vec<Value>, i32, Vec<String>) {
        self.stdin.take();
        let mut stdout = self.child.stdout.take().unwrap();
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).unwrap();
        let status = self.child.wait().unwrap();
        while let Ok(l) = self.stderr_lines.recv_timeout(Duration::from_secs(2)) {
            self.stderr_seen.push(l);
        }
        (
            parse_ndjson(&buf),
            status.code().unwrap_or(-1),
            self.stderr_seen,
        )
    }
}

/// Runs btrace to completion in the background, checking that every BPF program it
/// loaded is gone afterwards. A `-c "workload --wait ..."` command is released once the
/// programs are recorded. Returns (records, exit code, stderr lines).
pub fn trace_to_end(args: &[&str]) -> (Vec<Value>, i32, Vec<String>) {
    let mut r = Running::start(args);
    let ids = r.wait_attached();
    r.send_line("go");
    let out = r.finish();
    assert_unloaded(&ids);
    out
}

/// The one stderr line of a failed command; asserts non-zero exit and no backtrace.
pub fn one_line_error(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got {:?}",
        out.status
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected one stderr line: {err:?}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    err
}

/// A process name that would drive a terminal: a color escape sequence and a newline
/// (13 bytes: the kernel keeps 15).
pub const HOSTILE_NAME: &str = "\x1b[31mRED\nFAKE";
/// How text output must show it.
pub const HOSTILE_SHOWN: &str = r"\x1b[31mRED\nFAKE";

/// `workload named HOSTILE_NAME WHAT ARG` as a `-c` command line.
pub fn hostile_cmd(what: &str, arg: &str) -> String {
    format!("{} named '{HOSTILE_NAME}' {what} '{arg}'", workload())
}

/// Text output holds no ESC byte and no line of the name's own (stdout and stderr), and
/// shows the name escaped on stdout.
pub fn assert_name_escaped(out: &Output) {
    for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(!bytes.contains(&0x1b), "an ESC byte in {what}: {text}");
        assert!(
            !text.lines().any(|l| l.starts_with("FAKE")),
            "a line of the name's own in {what}: {text}"
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(HOSTILE_SHOWN),
        "name not shown escaped: {text}"
    );
}
