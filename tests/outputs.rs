// SPDX-License-Identifier: Apache-2.0
//! The files btrace writes (`-o`, `--svg`) and reads (`--btf`, a probed binary, a `-c`
//! program), against the real kernel: an output that cannot be written fails before the
//! `Tracing` line and names the file; an existing file is left as it was until there is
//! something to write; an output that is an input is refused; a FIFO without a reader,
//! as an output or an input, ends btrace at once rather than blocking it for ever.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A fresh directory of this test process, one per call.
fn tmpdir(tag: &str) -> PathBuf {
    static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("btrace-out-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// btrace `args` fails within 5 s with one line (no `Tracing` line before it) that
/// contains `says`; returns that line.
fn refused(args: &[&str], says: &str) -> String {
    let out = btrace_within(args, Duration::from_secs(5));
    let e = one_line_error(&out);
    assert!(!e.starts_with("Tracing"), "{args:?}: {e}");
    assert!(e.contains(says), "{args:?}: {e:?} does not say {says:?}");
    e
}

fn mkfifo(p: &Path) {
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

#[test]
fn unwritable_outputs_fail_before_tracing_and_leave_files_as_they_were() {
    let dir = tmpdir("unwritable");
    let keep = dir.join("keep.txt");
    std::fs::write(&keep, "keep me\n").unwrap();
    let k = s(&keep);
    // The SVG cannot be written: nothing is traced, and -o's file is not emptied.
    let e = refused(
        &[
            "profile",
            "-o",
            &k,
            "--svg",
            "/nonexistent/x.svg",
            "-d",
            "1",
        ],
        "--svg /nonexistent/x.svg: cannot write: No such file or directory",
    );
    assert!(e.starts_with("btrace: "), "{e}");
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "keep me\n");
    // -o in a missing directory, -o a directory.
    let missing = dir.join("no/such/dir/out.txt");
    refused(
        &["hist", "-o", &s(&missing), "-d", "1"],
        &format!("-o {}: cannot write", missing.display()),
    );
    refused(
        &["exec", "-o", &s(&dir), "-d", "1"],
        &format!("-o {}: is a directory", dir.display()),
    );
    // A run that fails after -o was opened (no such process) leaves the file as it was,
    // and leaves no file it created.
    refused(&["exec", "-o", &k, "-p", "999999999"], "999999999");
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "keep me\n");
    let fresh = dir.join("fresh.txt");
    refused(&["exec", "-o", &s(&fresh), "-p", "999999999"], "999999999");
    assert!(!fresh.exists(), "an empty output file was left behind");
    // The same file for two outputs.
    refused(
        &["profile", "-o", &k, "--svg", &k, "-d", "1"],
        &format!("--svg {k}: is also the output of -o {k}"),
    );
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "keep me\n");
    // A write that fails at the end names the file.
    let out = btrace_within(
        &["exec", "--json", "-o", "/dev/full", "-d", "0.3"],
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .last()
            .unwrap_or_default()
            .starts_with("btrace: writing /dev/full: No space left on device"),
        "{err}"
    );
    // A file that can be written is still replaced by the run's results.
    let (_, code, _) = trace_to_end(&["exec", "--json", "-o", &k, "-d", "0.3"]);
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&keep).unwrap();
    assert!(!text.contains("keep me"), "{text}");
    let records = parse_ndjson(text.as_bytes());
    summary(&records);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_output_that_is_an_input_is_refused() {
    let dir = tmpdir("input");
    let bin = dir.join("ufuncs");
    std::fs::copy(ufuncs(), &bin).unwrap();
    let before = std::fs::read(&bin).unwrap();
    let b = s(&bin);
    refused(
        &["uprobe", &format!("{b}:f"), "-o", &b, "-d", "1"],
        &format!("-o {b}: is the probed file ({b}), which btrace reads"),
    );
    refused(
        &["uprobe", &format!("{b}:f"), "--count", "-o", &b, "-d", "1"],
        "which btrace reads",
    );
    assert_eq!(std::fs::read(&bin).unwrap(), before, "the binary changed");
    // The -c program.
    refused(
        &["exec", "-o", &b, "-c", &b],
        &format!("the -c program {b} is also the output file (-o {b})"),
    );
    assert_eq!(std::fs::read(&bin).unwrap(), before, "the binary changed");
    // The --btf file (a copy of the kernel's own, so it is read).
    let btf = dir.join("vmlinux.btf");
    std::fs::copy("/sys/kernel/btf/vmlinux", &btf).unwrap();
    let btf_before = std::fs::read(&btf).unwrap();
    let t = s(&btf);
    refused(
        &["hist", "--btf", &t, "-o", &t, "-d", "1"],
        &format!("-o {t}: is --btf ({t}), which btrace reads"),
    );
    assert_eq!(
        std::fs::read(&btf).unwrap(),
        btf_before,
        "the BTF file changed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each place a FIFO can be given, with no process at the other end: btrace ends within
/// 5 s with one line naming it (it used to wait in open() for ever, through SIGINT).
#[test]
fn fifos_without_a_reader_or_writer_end_btrace_at_once() {
    let dir = tmpdir("fifo");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let f = s(&fifo);
    let no_reader = format!("{f}: a FIFO with no reader; start its reader first");
    refused(&["hist", "-o", &f, "-d", "1"], &format!("-o {no_reader}"));
    refused(
        &["profile", "--svg", &f, "-d", "1"],
        &format!("--svg {no_reader}"),
    );
    let not_file = format!("{f} is a FIFO (named pipe), not a regular file");
    for cmd in ["hist", "doctor"] {
        refused(&[cmd, "--btf", &f], &format!("--btf {not_file}"));
    }
    refused(&["uprobe", &format!("{f}:f"), "-d", "1"], &not_file);
    refused(
        &["uprobe", &format!("{f}:f"), "--count", "-d", "1"],
        &not_file,
    );
    refused(&["usdt", &format!("{f}:p:n"), "-d", "1"], &not_file);
    refused(&["usdt", &f, "--list"], &not_file);
    assert!(std::fs::symlink_metadata(&fifo)
        .map(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()))
        .unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A FIFO whose reader is there is written as a pipe, and SIGINT ends the run with the
/// summary delivered to the reader.
#[test]
fn a_fifo_with_a_reader_is_written_and_sigint_ends_the_run() {
    let dir = tmpdir("reader");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let reader = Command::new("cat")
        .arg(&fifo)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // btrace starts once cat waits in its open of the FIFO: a reader waiting there
    // counts, and without one btrace refuses the FIFO (ENXIO).
    wait_in_open(reader.id());
    let f = s(&fifo);
    let mut run = Running::start(&["exec", "--json", "-o", &f]);
    run.wait_attached();
    run.signal(libc::SIGINT);
    let t0 = std::time::Instant::now();
    let (_, code, err) = run.finish();
    assert!(t0.elapsed() < Duration::from_secs(5), "{err:?}");
    assert_eq!(code, 0, "{err:?}");
    let got = reader.wait_with_output().unwrap();
    let records = parse_ndjson(&got.stdout);
    assert_eq!(summary(&records)["end"], "Interrupted");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until process `pid` is in openat(2) (its blocking open of a FIFO).
fn wait_in_open(pid: u32) {
    for _ in 0..1000 {
        let now = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        if now.split(' ').next() == Some(&libc::SYS_openat.to_string()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("process {pid} never opened the FIFO");
}

/// A FIFO whose reader has it open but stops reading: once the pipe is full, btrace
/// waits for it while tracing, and Ctrl-C still ends the run within seconds (a blocked
/// write held the signal path: only a second signal ended it), with one line naming the
/// file; nothing else is left attached.
#[test]
fn a_fifo_whose_reader_stops_reading_does_not_hold_ctrl_c() {
    let dir = tmpdir("stalled");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    // Opens its end (non-blocking: a FIFO's read end opens at once that way), says so,
    // and never reads. btrace starts only then: a FIFO without a reader is refused.
    let mut reader = Command::new("python3")
        .args([
            "-c",
            "import os, sys, time; f = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK); print('ready', flush=True); time.sleep(60)",
        ])
        .arg(&fifo)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(reader.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");
    let f = s(&fifo);
    // Every syscall of the machine, as text: the 64 KiB pipe fills within moments.
    let mut run = Running::start(&["tracepoint", "raw_syscalls:sys_enter", "-o", &f]);
    let ids = run.wait_attached();
    std::thread::sleep(Duration::from_secs(1));
    run.signal(libc::SIGINT);
    let t0 = std::time::Instant::now();
    let (_, code, err) = run.finish();
    let took = t0.elapsed();
    let _ = reader.kill();
    let _ = reader.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(took < Duration::from_secs(8), "{took:?} to end: {err:?}");
    assert_ne!(code, 0, "{err:?}");
    let line = err
        .iter()
        .find(|l| l.contains("stopped reading"))
        .unwrap_or_else(|| panic!("no line about the reader: {err:?}"));
    assert!(line.contains(&f), "{line}");
    assert_unloaded(&ids);
}
