// SPDX-License-Identifier: Apache-2.0
//! Compiles every `*.bpf.c` under `src/` into a libbpf skeleton (`$OUT_DIR/<name>.skel.rs`):
//! the tracers' programs (`src/tracers/NAME/NAME.bpf.c`), the apps' and core's own. Each is
//! compiled with the shared kernel-side headers (`src/bpf/include`), `vmlinux.h`
//! (`src/bpf`, per architecture) and its own folder (a tracer's header beside it).
//! File stems name the skeletons, so they must be unique.
//!
//! clang is found through `$CLANG`, else the newest `clang`/`clang-NN` on PATH. The BPF
//! objects are CO-RE: they are relocated against the running kernel's BTF at load time,
//! so nothing here depends on the build machine's kernel.

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;

fn clang_major(clang: &Path) -> Option<u32> {
    let out = Command::new(clang).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text.split("version ").nth(1)?;
    rest.split('.').next()?.trim().parse().ok()
}

/// `$CLANG` if set, else the clang on PATH with the highest major version.
fn find_clang() -> Result<PathBuf, String> {
    if let Some(c) = env::var_os("CLANG") {
        return Ok(PathBuf::from(c));
    }
    let path = env::var_os("PATH").unwrap_or_default();
    let mut best: Option<(u32, PathBuf)> = None;
    for dir in env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_clang = name == "clang"
                || name
                    .strip_prefix("clang-")
                    .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()));
            if !is_clang {
                continue;
            }
            let p = entry.path();
            if let Some(v) = clang_major(&p) {
                if best.as_ref().is_none_or(|(bv, _)| v > *bv) {
                    best = Some((v, p));
                }
            }
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| {
        "no clang found on PATH (set $CLANG or `apt-get install clang`; `make deps` installs it)"
            .to_string()
    })
}

/// Every `*.bpf.c` below `dir`, sorted, with every directory seen (for rerun-if-changed).
fn find_sources(dir: &Path, sources: &mut Vec<PathBuf>, dirs: &mut Vec<PathBuf>) {
    dirs.push(dir.to_path_buf());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            find_sources(&p, sources, dirs);
        } else if p.to_string_lossy().ends_with(".bpf.c") {
            sources.push(p);
        }
    }
}

/// The architecture as libbpf's headers name it (`__TARGET_ARCH_<name>`).
fn target_arch() -> &'static str {
    match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86",
        Ok("aarch64") => "arm64",
        Ok(other) => {
            eprintln!("error: btrace has no BPF build for target architecture {other}");
            std::process::exit(1);
        }
        Err(_) => "x86",
    }
}

/// The commit the tree was built from, for `btrace --version`: `$BTRACE_COMMIT` if set (a
/// packager building from a tarball knows it), else `git rev-parse --short HEAD` when the
/// package is the top of a git work tree (not a tarball unpacked inside some other
/// repository), else "unknown". Never fails the build. Cargo is told to rerun this script
/// when HEAD or the branch it names moves (only files that exist: a missing one would make
/// every build rerun it).
fn git_commit() -> String {
    println!("cargo:rerun-if-env-changed=BTRACE_COMMIT");
    if let Some(c) = env::var("BTRACE_COMMIT").ok().filter(|c| !c.is_empty()) {
        return c;
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
    };
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let top = git(&["-C", &manifest_dir, "rev-parse", "--show-toplevel"]);
    let same_dir = |a: &str, b: &str| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !top.is_some_and(|t| same_dir(&t, &manifest_dir)) {
        return "unknown".to_string();
    }
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["-C", &manifest_dir, "symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["-C", &manifest_dir, "rev-parse", "--git-path", &name]) {
            let path = Path::new(&manifest_dir).join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    git(&["-C", &manifest_dir, "rev-parse", "--short", "HEAD"])
        .unwrap_or_else(|| "unknown".to_string())
}

/// `btrace --version`'s text after the name: version, commit, target triple, and whether the
/// C library is linked in (`+crt-static`, the release build) or not.
fn version_line() -> String {
    let target = env::var("TARGET").unwrap_or_else(|_| "unknown-target".to_string());
    let static_crt = env::var("CARGO_CFG_TARGET_FEATURE")
        .unwrap_or_default()
        .split(',')
        .any(|f| f == "crt-static");
    format!(
        "{} (commit {}, {target}, {})",
        env::var("CARGO_PKG_VERSION").unwrap_or_default(),
        git_commit(),
        if static_crt { "static" } else { "dynamic" }
    )
}

fn main() {
    println!("cargo:rustc-env=BTRACE_VERSION_LINE={}", version_line());
    let clang = match find_clang() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR set by cargo"));
    println!("cargo:rerun-if-env-changed=CLANG");

    let mut sources = Vec::new();
    let mut dirs = Vec::new();
    find_sources(Path::new("src"), &mut sources, &mut dirs);
    sources.sort();
    let arch_define = format!("-D__TARGET_ARCH_{}", target_arch());
    // What the kernel programs are made from: clang and the target, this script's own binary
    // (a new build.rs or libbpf-cargo), every watched file's size and mtime.
    let mut inputs = format!("{} {arch_define}\n", clang.display());
    let mut note_input = |p: &Path| {
        if let Ok(m) = std::fs::metadata(p) {
            inputs += &format!("{} {} {:?}\n", p.display(), m.len(), m.modified().ok());
        }
    };
    if let Ok(me) = env::current_exe() {
        note_input(&me);
    }
    // A new or removed file changes its directory's mtime; headers are watched one by one.
    for d in &dirs {
        println!("cargo:rerun-if-changed={}", d.display());
        note_input(d);
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "h" || x == "c") {
                println!("cargo:rerun-if-changed={}", p.display());
                note_input(&p);
            }
        }
    }
    // This script also reruns when HEAD moves (the commit in --version): then the kernel
    // programs of the last successful run, still in OUT_DIR, are kept if made from the
    // same inputs, rather than compiled again (about a minute on a busy 2-CPU machine).
    let stamp = out.join("bpf-inputs.stamp");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == inputs) {
        return;
    }

    let mut stems = std::collections::BTreeSet::new();
    for src in sources {
        let stem = src
            .file_name()
            .and_then(OsStr::to_str)
            .and_then(|n| n.strip_suffix(".bpf.c"))
            .expect("name.bpf.c");
        if !stems.insert(stem.to_string()) {
            eprintln!(
                "error: two BPF sources are named {stem}.bpf.c; skeleton names must be unique"
            );
            std::process::exit(1);
        }
        let own_dir = src
            .parent()
            .expect("a file has a folder")
            .to_string_lossy()
            .into_owned();
        let skel = out.join(format!("{stem}.skel.rs"));
        let obj = out.join(format!("{stem}.bpf.o"));
        if let Err(e) = SkeletonBuilder::new()
            .source(&src)
            .obj(&obj)
            .clang(&clang)
            .clang_args([
                "-I",
                "src/bpf/include",
                "-I",
                "src/bpf",
                "-I",
                own_dir.as_str(),
                "-Wall",
                "-Wno-unused-function",
                "-O2",
                "-g",
                arch_define.as_str(),
            ])
            .build_and_generate(&skel)
        {
            eprintln!(
                "error: compiling {} with {}: {e:#}",
                src.display(),
                clang.display()
            );
            std::process::exit(1);
        }
    }
    // Best effort: without the stamp the next run compiles again.
    let _ = std::fs::write(&stamp, inputs);
}
