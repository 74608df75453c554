// SPDX-License-Identifier: Apache-2.0
//! `btrace doctor`: its facts checked against the running kernel.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn fact<'a>(recs: &'a [Value], name: &str) -> &'a Value {
    recs.iter()
        .find(|r| r["type"] == "fact" && r["name"] == name)
        .unwrap_or_else(|| panic!("no fact {name}: {recs:?}"))
}

fn command<'a>(recs: &'a [Value], cmd: &str, mode: Option<&str>) -> &'a Value {
    recs.iter()
        .find(|r| r["type"] == "command" && r["command"] == cmd && r["mode"].as_str() == mode)
        .unwrap_or_else(|| panic!("no command {cmd} {mode:?}"))
}

#[test]
fn facts_match_this_kernel() {
    let out = btrace(&["doctor", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = parse_ndjson(&out.stdout);
    let uname = nix_release();
    assert_eq!(fact(&recs, "kernel")["value"], uname.as_str());
    assert_eq!(
        fact(&recs, "btf")["ok"],
        Path::new("/sys/kernel/btf/vmlinux").exists()
    );
    let kprobes = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    if !kprobes {
        assert_eq!(fact(&recs, "kprobes")["ok"], false);
    }
    // Ring buffers, tp_btf and task storage exist on every kernel btrace is tested on here
    // (5.11+); the host's hist runs on tp_btf+task_storage.
    assert_eq!(fact(&recs, "ringbuf")["ok"], true);
    assert_eq!(fact(&recs, "tp_btf")["ok"], true);
    // uprobe_multi links from 6.6 (the host runs 6.18): uprobe attaches through them.
    assert_eq!(fact(&recs, "uprobe_multi")["ok"], true);
    let how = command(&recs, "uprobe", None)["how"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(how.contains("uprobe.multi"), "{how}");
    assert_eq!(fact(&recs, "capabilities")["ok"], true, "tests run as root");
    let jit = std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable").unwrap();
    assert_eq!(fact(&recs, "jit")["value"], jit.trim());
    // Commands follow from the facts.
    let fentry = fact(&recs, "fentry")["ok"].as_bool().unwrap();
    let kprobe = fact(&recs, "kprobes")["ok"].as_bool().unwrap();
    assert_eq!(command(&recs, "kprobe", Some("fentry"))["works"], fentry);
    assert_eq!(command(&recs, "kprobe", Some("kprobe"))["works"], kprobe);
    assert_eq!(
        command(&recs, "kprobe", Some("auto"))["works"],
        fentry || kprobe
    );
    assert_eq!(command(&recs, "hist", None)["works"], true);
    assert_eq!(command(&recs, "tracepoint", None)["works"], true);
    assert_eq!(command(&recs, "verifier", None)["works"], true);
    for c in of_type(&recs, "command") {
        if c["works"] == false {
            assert!(
                c["fix"].as_str().is_some_and(|f| !f.is_empty()),
                "a broken command says what would fix it: {c}"
            );
        }
    }
    let s = summary(&recs);
    assert!(s["works"].as_array().unwrap().iter().any(|w| w == "hist"));
}

#[test]
fn text_table() {
    let out = btrace(&["doctor"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for row in [
        "kernel",
        "btf",
        "ringbuf",
        "kprobes",
        "fentry",
        "tp_btf",
        "task_storage",
        "uprobe_multi",
        "tracefs",
        "capabilities",
        "unprivileged_bpf_disabled",
        "lockdown",
        "jit",
    ] {
        assert!(
            text.lines().any(|l| l[1..].starts_with(row)),
            "row {row} missing:\n{text}"
        );
    }
    assert!(text.contains("kprobe --hook fentry"), "{text}");
}

fn nix_release() -> String {
    let out = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Where tracefs is not mounted, `exec` (classic tracepoints) and `doctor` work, and
/// tracefs is still not mounted afterwards: btrace mounts it for itself only, in a mount
/// namespace of its own. The test runs in a mount namespace of its own too (private
/// propagation), with every tracefs mount unmounted there.
#[test]
fn tracefs_mounted_for_btrace_alone_and_never_left_mounted() {
    let bin = btrace_bin();
    let script = format!(
        r#"set -e
for m in $(awk '$3 == "tracefs" {{print $2}}' /proc/self/mounts | sort -r); do umount -l "$m"; done
echo "before $(grep -c ' - tracefs ' /proc/self/mountinfo || true)"
{bin} exec -d 1 --hook tracepoint > /dev/null 2> exec.err || {{ echo "exec failed: $(cat exec.err)"; exit 1; }}
echo "after-exec $(grep -c ' - tracefs ' /proc/self/mountinfo || true)"
# A -c command runs in the system's mount namespace, not btrace's own (tracepoint mounts
# tracefs before its command is forked).
{bin} tracepoint syscalls:sys_enter_getppid -c "readlink /proc/self/ns/mnt" > tp.out 2> tp.err || {{ echo "tracepoint failed: $(cat tp.err)"; exit 1; }}
echo "cmd-ns-same $(grep -cF "$(readlink /proc/self/ns/mnt)" tp.out || true)"
{bin} doctor > doctor.out || true
grep '^ *tracefs' doctor.out | sed 's/^/doctor: /'
echo "after-doctor $(grep -c ' - tracefs ' /proc/self/mountinfo || true)"
"#,
        bin = bin.display()
    );
    let dir = std::env::temp_dir().join(format!("btrace-tracefs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .current_dir(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}{stderr}");
    assert!(text.contains("before 0\n"), "{text}");
    assert!(text.contains("after-exec 0\n"), "{text}");
    assert!(text.contains("cmd-ns-same 1\n"), "{text}");
    assert!(text.contains("after-doctor 0\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("doctor:") && l.contains("not mounted")),
        "{text}"
    );
}
