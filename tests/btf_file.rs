// SPDX-License-Identifier: Apache-2.0
//! Kernels without /sys/kernel/btf/vmlinux: one clear line naming --btf, and with a BTF
//! file given (--btf or BTRACE_BTF) exact counts again. The kernel's BTF is hidden in a
//! mount namespace of the test's own (a tmpfs over /sys/kernel/btf).

mod common;

use std::process::Command;

use common::*;

/// Runs btrace with /sys/kernel/btf hidden; `btf_file`: where a copy of the kernel's BTF
/// is (made before hiding it).
fn without_kernel_btf(args: &[&str], env_btf: Option<&str>) -> std::process::Output {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "mount -t tmpfs none /sys/kernel/btf && exec {} {}",
        btrace_bin().display(),
        quoted.join(" ")
    );
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    if let Some(f) = env_btf {
        c.env("BTRACE_BTF", f);
    }
    c.output().unwrap()
}

#[test]
fn a_btf_file_stands_in_for_the_kernels() {
    let copy = std::env::temp_dir().join(format!("btrace-vmlinux-{}.btf", std::process::id()));
    std::fs::copy("/sys/kernel/btf/vmlinux", &copy).unwrap();
    let file = copy.to_str().unwrap();
    let cmd = format!("{} syscalls 77 5", workload());

    let e = one_line_error(&without_kernel_btf(&["hist", "-d", "1"], None));
    assert!(
        e.contains("/sys/kernel/btf/vmlinux is missing") && e.contains("--btf FILE"),
        "{e}"
    );

    let out = without_kernel_btf(&["--btf", file, "hist", "--json", "-c", &cmd], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = parse_ndjson(&out.stdout);
    let count = |name: &str| {
        recs.iter()
            .filter(|r| r["type"] == "hist" && r["syscall"] == name)
            .map(|r| r["count"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!((count("getppid"), count("read")), (77, 5), "{recs:?}");

    let out = without_kernel_btf(
        &[
            "tracepoint",
            "--json",
            "syscalls:sys_enter_getppid",
            "-c",
            &cmd,
        ],
        Some(file),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(of_type(&parse_ndjson(&out.stdout), "event").len(), 77);

    let out = without_kernel_btf(&["--btf", file, "doctor", "--json"], None);
    let recs = parse_ndjson(&out.stdout);
    let btf = recs
        .iter()
        .find(|r| r["type"] == "fact" && r["name"] == "btf")
        .unwrap();
    assert_eq!(
        (btf["value"].as_str(), btf["ok"].as_bool()),
        (Some("file"), Some(true)),
        "{btf}"
    );

    let empty = std::env::temp_dir().join(format!("btrace-empty-{}.btf", std::process::id()));
    std::fs::write(&empty, b"").unwrap();
    let e = one_line_error(&btrace(&[
        "--btf",
        empty.to_str().unwrap(),
        "hist",
        "-d",
        "1",
    ]));
    assert!(e.contains("not a BTF file"), "{e}");
    std::fs::remove_file(copy).ok();
    std::fs::remove_file(empty).ok();
}

/// A --btf file that does not exist is said to be missing, not "not a BTF file".
#[test]
fn a_missing_btf_file_is_no_such_file() {
    let e = one_line_error(&btrace(&[
        "--btf",
        "/nonexistent/btrace.btf",
        "hist",
        "-d",
        "1",
    ]));
    assert!(
        e.contains("--btf /nonexistent/btrace.btf: no such file"),
        "{e}"
    );
    assert!(!e.contains("not a BTF file"), "{e}");
}
