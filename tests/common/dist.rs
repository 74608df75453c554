// SPDX-License-Identifier: Apache-2.0
//! The release files `make dist` writes to `target/dist`, and their archives unpacked for
//! tests: what a user downloads is what the tests run.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;

/// `target/dist`, made by `make dist` first when it holds no `SHA256SUMS` (`make unit` has
/// made it already).
pub fn dist_dir() -> PathBuf {
    static MAKE: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/dist");
    MAKE.call_once(|| {
        if !dir.join("SHA256SUMS").exists() {
            let ok = Command::new("make")
                .args(["-s", "dist"])
                .current_dir(&root)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "make dist failed");
        }
    });
    dir
}

/// The archive's top directory name for `arch` (`x86_64`, `aarch64`).
pub fn archive_stem(arch: &str) -> String {
    format!("btrace-{}-{arch}-linux", env!("CARGO_PKG_VERSION"))
}

/// The release archive of `arch`, unpacked afresh (once per test binary; test binaries run
/// one after the other) into `target/dist-test/ARCH`; returns the archive's top directory.
pub fn unpacked(arch: &str) -> PathBuf {
    static UNPACK: [Once; 2] = [Once::new(), Once::new()];
    let slot = usize::from(arch == "aarch64");
    let into = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/dist-test/{arch}"));
    let stem = archive_stem(arch);
    UNPACK[slot].call_once(|| {
        let archive = dist_dir().join(format!("{stem}.tar.gz"));
        let _ = std::fs::remove_dir_all(&into);
        std::fs::create_dir_all(&into).unwrap();
        let out = Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&into)
            .output()
            .expect("running tar");
        assert!(
            out.status.success(),
            "unpacking {}: {out:?}",
            archive.display()
        );
    });
    into.join(stem)
}

/// The btrace binary of this machine's architecture from its release archive.
pub fn release_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BTRACE_RELEASE_BIN") {
        return PathBuf::from(p);
    }
    unpacked(std::env::consts::ARCH).join("btrace")
}
