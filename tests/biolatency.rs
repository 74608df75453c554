// SPDX-License-Identifier: Apache-2.0
//! `btrace biolatency` against the real kernel: a loop device made by the test, written
//! and read with O_DIRECT a known number of times (each one request).

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

const N: u64 = 100;
const SIZE: u64 = 4096;

/// A loop device over a backing file; detached and removed on drop.
struct Loop {
    dev: String,
    file: std::path::PathBuf,
}

impl Loop {
    fn new(tag: &str) -> Loop {
        let file =
            std::env::temp_dir().join(format!("btrace-bio-{tag}-{}.img", std::process::id()));
        let f = std::fs::File::create(&file).unwrap();
        f.set_len(8 << 20).unwrap();
        let out = Command::new("losetup")
            .args(["-f", "--show", "--direct-io=on"])
            .arg(&file)
            .output()
            .expect("running losetup (util-linux)");
        assert!(
            out.status.success(),
            "losetup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
        Loop { dev, file }
    }

    fn name(&self) -> &str {
        self.dev.trim_start_matches("/dev/")
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
        let _ = std::fs::remove_file(&self.file);
    }
}

fn rec<'a>(recs: &'a [Value], disk: &str, op: &str) -> &'a Value {
    let r: Vec<_> = of_type(recs, "bio")
        .into_iter()
        .filter(|r| r["disk"] == disk && r["op"] == op)
        .collect();
    assert_eq!(r.len(), 1, "one {disk} {op} record expected: {recs:#?}");
    r[0]
}

/// N requests of SIZE bytes, exactly, unless the kernel skipped completion runs (an
/// interrupt's completion while the program ran on that CPU, reported in the summary as
/// `lost.missed`): then no more short than those.
fn check_op(r: &Value, missed: u64) {
    let n = r["count"].as_u64().unwrap();
    if missed == 0 {
        assert_eq!(n, N, "{r}");
    } else {
        assert!(n <= N && N - n <= missed, "{r} with {missed} missed runs");
    }
    assert_eq!(r["bytes"], n * SIZE, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(
        r["sizes"],
        serde_json::json!([{"lo": SIZE, "hi": 2 * SIZE, "count": n}]),
        "{r}"
    );
    let b: u64 = r["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(b, n);
    assert!(r["p50_us"].as_u64().unwrap() <= r["p99_us"].as_u64().unwrap());
}

fn missed(recs: &[Value]) -> u64 {
    summary(recs)["lost"]["missed"]
        .as_u64()
        .expect("lost.missed in the summary")
}

#[test]
fn exact_requests_per_operation_on_a_loop_device() {
    let lo = Loop::new("per-disk");
    let w = workload();
    let cmd = format!("{w} --wait direct {} {N} {SIZE}", lo.dev);
    let (recs, code, _) = trace_to_end(&["biolatency", "--json", "--per-disk", "-c", &cmd]);
    assert_eq!(code, 0);
    let missed = missed(&recs);
    let wr = rec(&recs, lo.name(), "write");
    let rd = rec(&recs, lo.name(), "read");
    check_op(wr, missed);
    check_op(rd, missed);
    let dev = std::fs::read_to_string(format!("/sys/block/{}/dev", lo.name())).unwrap();
    assert_eq!(wr["dev"], dev.trim());
    let s = summary(&recs);
    assert_eq!(s["lost"]["map_full"], 0);
}

#[test]
fn raw_tp_hook_and_queue_times() {
    let lo = Loop::new("raw");
    let w = workload();
    let cmd = format!("{w} --wait direct {} {N} {SIZE}", lo.dev);
    let (recs, code, _) = trace_to_end(&[
        "biolatency",
        "--json",
        "--per-disk",
        "-Q",
        "--hook",
        "raw_tp",
        "-c",
        &cmd,
    ]);
    assert_eq!(code, 0);
    assert_eq!(summary(&recs)["hook"], "raw_tp");
    for op in ["write", "read"] {
        let r = rec(&recs, lo.name(), op);
        check_op(r, missed(&recs));
        // Queue times exist only for requests the block layer inserted: never more.
        assert!(r["queue"]["count"].as_u64().unwrap() <= N, "{r}");
    }
}

#[test]
fn without_per_disk_one_record_per_operation() {
    let lo = Loop::new("ops");
    let w = workload();
    let cmd = format!("{w} --wait direct {} {N} {SIZE}", lo.dev);
    let (recs, code, _) = trace_to_end(&["biolatency", "--json", "-c", &cmd]);
    assert_eq!(code, 0);
    // Scoped to the command: its loop requests (the backing file's own I/O is issued by
    // the loop driver, not by the command), and the reads of its own pages from disk
    // when they are not cached (page faults in the command): reads are at least N.
    for op in ["write", "read"] {
        let r: Vec<_> = of_type(&recs, "bio")
            .into_iter()
            .filter(|r| r["op"] == op)
            .collect();
        assert_eq!(r.len(), 1, "{recs:#?}");
        assert!(r[0]["disk"].is_null(), "{}", r[0]);
        if op == "write" {
            check_op(r[0], missed(&recs));
        } else {
            assert!(r[0]["count"].as_u64().unwrap() >= N, "{}", r[0]);
        }
    }
}
