// SPDX-License-Identifier: Apache-2.0
//! The shipped release binary (from its release archive, `make dist`) is fully static: it
//! runs from a root that holds nothing but itself and the static workload (no /lib, no
//! loader), and counts exactly there.

mod common;

use std::path::Path;
use std::process::Command;

use common::dist::release_bin;
use common::*;

/// The program headers and dynamic section as readelf prints them.
fn elf_headers(bin: &Path) -> String {
    let out = Command::new("readelf")
        .args(["-lW", "-dW"])
        .arg(bin)
        .env("LC_ALL", "C")
        .output()
        .expect("running readelf (binutils)");
    assert!(out.status.success(), "readelf {}: {out:?}", bin.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn release_binary_has_no_interpreter_and_no_needed_library() {
    let bin = release_bin();
    let headers = elf_headers(&bin);
    assert!(
        !headers.contains("INTERP"),
        "{} asks for a program interpreter:\n{headers}",
        bin.display()
    );
    assert!(
        !headers.contains("(NEEDED)"),
        "{} needs shared libraries:\n{headers}",
        bin.display()
    );
}

/// `--version` names the version, the commit and the target, and says the build is static.
#[test]
fn version_names_commit_target_and_static() {
    let bin = release_bin();
    let out = Command::new(&bin).arg("--version").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let want = format!(
        "btrace {} (commit {commit}, {}-unknown-linux-gnu, static)",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    assert_eq!(text, want);
}

/// A root made of a temporary directory with only the binary and the static workload, and
/// /proc, /sys, /dev bound in, inside a private mount namespace of its own (`unshare`), so
/// nothing mounted here is seen outside and everything goes when the namespace ends.
#[test]
fn release_binary_counts_exactly_from_an_empty_root() {
    let bin = release_bin();
    let w = workload();
    let root = std::env::temp_dir().join(format!("btrace-emptyroot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for d in ["proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(&bin, root.join("btrace")).unwrap();
    std::fs::copy(&w, root.join("workload")).unwrap();

    let r = root.to_str().unwrap();
    let script = format!(
        "set -e; for d in proc sys dev; do mount --rbind /$d {r}/$d; done; \
         LC_ALL=C ls -A {r}; \
         exec chroot {r} /btrace hist --json --syscalls getppid,read \
         -c '/workload syscalls 1000 300'"
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation=private", "--", "sh", "-c"])
        .arg(&script)
        .output()
        .expect("running unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();

    // The namespace is gone with its last process: nothing may stay mounted under the root.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(r)).collect();
    if leaked.is_empty() {
        std::fs::remove_dir_all(&root).ok();
    }
    assert!(leaked.is_empty(), "mounts leaked: {leaked:?}");

    // The listing printed before the chroot: the root holds nothing else.
    let mut lines = stdout.lines();
    let listing: Vec<&str> = lines.by_ref().take(5).collect();
    assert_eq!(
        listing,
        ["btrace", "dev", "proc", "sys", "workload"],
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        out.status.success(),
        "btrace in an empty root: {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let json: String = lines.map(|l| format!("{l}\n")).collect();
    let recs = parse_ndjson(json.as_bytes());
    let count = |name: &str| -> u64 {
        recs.iter()
            .filter(|r| r["type"] == "hist" && r["syscall"] == name)
            .map(|r| r["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(count("getppid"), 1000, "{recs:?}");
    assert_eq!(count("read"), 300, "{recs:?}");
    assert_eq!(summary(&recs)["lost"]["map_full"], 0, "{recs:?}");
}
