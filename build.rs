//! Compiles every `src/bpf/*.bpf.c` into a libbpf skeleton (`$OUT_DIR/<name>.skel.rs`).
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

fn main() {
    let clang = match find_clang() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR set by cargo"));
    let bpf_dir = Path::new("src/bpf");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed={}", bpf_dir.display());

    let mut sources: Vec<PathBuf> = std::fs::read_dir(bpf_dir)
        .expect("src/bpf exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();

    for src in sources {
        println!("cargo:rerun-if-changed={}", src.display());
        let stem = src
            .file_name()
            .and_then(OsStr::to_str)
            .and_then(|n| n.strip_suffix(".bpf.c"))
            .expect("name.bpf.c");
        let skel = out.join(format!("{stem}.skel.rs"));
        let obj = out.join(format!("{stem}.bpf.o"));
        if let Err(e) = SkeletonBuilder::new()
            .source(&src)
            .obj(&obj)
            .clang(&clang)
            .clang_args([
                "-I",
                "src/bpf",
                "-Wall",
                "-Wno-unused-function",
                "-O2",
                "-g",
                "-D__TARGET_ARCH_x86",
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
    println!("cargo:rerun-if-changed=src/bpf/vmlinux.h");
}
