// SPDX-License-Identifier: Apache-2.0
//! The release files of `make dist`: checksums that verify, archives and packages that
//! hold the static binary of their architecture, a man page per command, completions that
//! complete, every linked crate's licence, and a systemd unit installed but not enabled.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::dist::{archive_stem, dist_dir, unpacked};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn run(cmd: &mut Command) -> String {
    let out = cmd.env("LC_ALL", "C").output().expect("running a tool");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The commands `btrace --help` lists (hidden ones are not listed).
fn commands(bin: &Path) -> BTreeSet<String> {
    let help = run(Command::new(bin).arg("--help"));
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn checksums_verify_and_name_every_release_file() {
    let dir = dist_dir();
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let names: BTreeSet<&str> = sums
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    let want: BTreeSet<String> = [
        format!("btrace-{VERSION}-x86_64-linux.tar.gz"),
        format!("btrace-{VERSION}-aarch64-linux.tar.gz"),
        format!("btrace_{VERSION}_amd64.deb"),
        format!("btrace_{VERSION}_arm64.deb"),
    ]
    .into();
    assert_eq!(
        names,
        want.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    let out = run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&dir));
    assert_eq!(out.matches(": OK").count(), 4, "{out}");
}

#[test]
fn archives_hold_the_static_binary_of_their_architecture() {
    for (arch, machine) in [("x86_64", "X86-64"), ("aarch64", "AArch64")] {
        let top = unpacked(arch);
        let bin = top.join("btrace");
        let header = run(Command::new("readelf").arg("-hW").arg(&bin));
        assert!(
            header.contains(&format!("Machine:                           {machine}"))
                || header
                    .lines()
                    .any(|l| l.contains("Machine:") && l.contains(machine)),
            "{arch}: {header}"
        );
        let dynamic = run(Command::new("readelf").args(["-lW", "-dW"]).arg(&bin));
        assert!(
            !dynamic.contains("INTERP") && !dynamic.contains("(NEEDED)"),
            "{arch} binary is not static:\n{dynamic}"
        );
        for f in [
            "README.md",
            "CHANGELOG.md",
            "LICENSE",
            "LICENSES/Apache-2.0.txt",
            "LICENSES/GPL-2.0-only.txt",
            "LICENSES/BSD-2-Clause.txt",
            "THIRD-PARTY.md",
            "systemd/btrace-serve.service",
            "completions/btrace.bash",
            "completions/_btrace",
            "completions/btrace.fish",
        ] {
            assert!(top.join(f).is_file(), "{arch}: no {f} in the archive");
        }
    }
    // The binary of this machine names the version of its archive, and says it is static.
    let here = unpacked(std::env::consts::ARCH).join("btrace");
    let v = run(Command::new(&here).arg("--version"));
    assert!(
        v.starts_with(&format!("btrace {VERSION} (commit "))
            && v.trim_end().ends_with(&format!(
                "{}-unknown-linux-gnu, static)",
                std::env::consts::ARCH
            )),
        "{v}"
    );
}

#[test]
fn a_man_page_for_btrace_and_every_command() {
    let top = unpacked("x86_64");
    let cmds = commands(&top.join("btrace"));
    assert!(cmds.len() >= 16, "{cmds:?}");
    let pages: BTreeSet<String> = std::fs::read_dir(top.join("man/man1"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut want: BTreeSet<String> = cmds.iter().map(|c| format!("btrace-{c}.1")).collect();
    want.insert("btrace.1".into());
    assert_eq!(pages, want, "one page per command, hidden ones left out");
    // A page is roff with the command's flags: hist's holds its scope flags and --by.
    let hist = std::fs::read_to_string(top.join("man/man1/btrace-hist.1")).unwrap();
    assert!(
        hist.starts_with(".ie") || hist.contains(".TH btrace-hist 1"),
        "{hist}"
    );
    for flag in ["\\-\\-cgroup", "\\-\\-pid", "\\-\\-by"] {
        assert!(hist.contains(flag), "btrace-hist.1 lacks {flag}");
    }
}

#[test]
fn bash_completion_completes_commands_and_flags() {
    let top = unpacked("x86_64");
    let script = top.join("completions/btrace.bash");
    let complete = |words: &str| -> BTreeSet<String> {
        let n = words.split_whitespace().count();
        let cword = if words.ends_with(' ') { n } else { n - 1 };
        let out = run(Command::new("bash").arg("-c").arg(format!(
            "source {}; COMP_WORDS=({words}); [ {cword} -ge ${{#COMP_WORDS[@]}} ] && COMP_WORDS+=(''); \
             COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; \
             _btrace btrace \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        )));
        out.split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(
        complete("btrace bio"),
        BTreeSet::from(["biolatency".to_string()])
    );
    let flags = complete("btrace offcpu --max-");
    assert!(flags.contains("--max-stacks"), "{flags:?}");
    // The hidden command is not offered.
    assert!(complete("btrace gen").is_empty());
}

#[test]
fn every_linked_crate_has_its_licence_in_the_archive() {
    let top = unpacked("x86_64");
    let list = std::fs::read_to_string(top.join("THIRD-PARTY.md")).unwrap();
    let rows: Vec<Vec<&str>> = list
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Crate") && !l.starts_with("| Library"))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    let names: BTreeSet<&str> = rows.iter().map(|r| r[0]).collect();
    // The crates and libraries the design names, and ones whose licences need their text.
    for n in [
        "libbpf-rs",
        "libbpf-sys",
        "libbpf",
        "clap",
        "blazesym",
        "inferno",
        "iced-x86",
        "ring",
        "glibc (libc.a)",
        "elfutils (libelf.a)",
        "zlib (libz.a)",
    ] {
        assert!(names.contains(n), "THIRD-PARTY.md lacks {n}");
    }
    // Build-time crates (libbpf-cargo, proc macros) are not linked, so not listed.
    for n in [
        "libbpf-cargo",
        "clap_derive",
        "serde_derive",
        "syn",
        "proc-macro2",
    ] {
        assert!(
            !names.contains(n),
            "THIRD-PARTY.md lists {n}, which is not linked"
        );
    }
    for r in &rows {
        for f in r[3].split(", ").map(|f| f.split(' ').next().unwrap()) {
            assert!(top.join(f).is_file(), "{}: {f} missing", r[0]);
        }
    }
    // As many crates as cargo links for this target (normal dependencies, no proc macros).
}

#[test]
fn debian_packages_install_binary_pages_completions_and_a_disabled_unit() {
    let dir = dist_dir();
    for (deb_arch, arch) in [("amd64", "x86_64"), ("arm64", "aarch64")] {
        let deb = dir.join(format!("btrace_{VERSION}_{deb_arch}.deb"));
        let field = |f: &str| run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(f));
        assert_eq!(field("Package").trim(), "btrace");
        assert_eq!(field("Version").trim(), VERSION);
        assert_eq!(field("Architecture").trim(), deb_arch);
        assert!(
            field("Depends").trim().is_empty(),
            "a static binary depends on nothing"
        );
        let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
        let files: BTreeSet<&str> = listing
            .lines()
            .filter_map(|l| l.split_whitespace().last())
            .map(|p| p.trim_start_matches('.'))
            .collect();
        for f in [
            "/usr/bin/btrace",
            "/usr/share/man/man1/btrace.1.gz",
            "/usr/share/man/man1/btrace-hist.1.gz",
            "/usr/share/bash-completion/completions/btrace",
            "/usr/share/zsh/vendor-completions/_btrace",
            "/usr/share/fish/vendor_completions.d/btrace.fish",
            "/lib/systemd/system/btrace-serve.service",
            "/usr/share/doc/btrace/copyright",
            "/usr/share/doc/btrace/THIRD-PARTY.md.gz",
        ] {
            assert!(files.contains(f), "{deb_arch}: no {f}:\n{listing}");
        }
        // Installed, not enabled: no symlink into a target's wants, no maintainer script.
        assert!(!listing.contains(".wants/"), "{listing}");
        let tmp =
            std::env::temp_dir().join(format!("btrace-deb-{}-{deb_arch}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        run(Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&tmp));
        let control: BTreeSet<String> = std::fs::read_dir(tmp.join("DEBIAN"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            control,
            BTreeSet::from(["control".into(), "md5sums".into()])
        );
        // The packaged binary is the archive's, byte for byte; the unit runs it.
        let packaged = std::fs::read(tmp.join("usr/bin/btrace")).unwrap();
        let archived = std::fs::read(unpacked(arch).join("btrace")).unwrap();
        let unit =
            std::fs::read_to_string(tmp.join("lib/systemd/system/btrace-serve.service")).unwrap();
        std::fs::remove_dir_all(&tmp).ok();
        assert!(
            packaged == archived,
            "{deb_arch}: the .deb's binary differs from the archive's"
        );
        assert!(
            unit.contains("\nExecStart=/usr/bin/btrace serve "),
            "{unit}"
        );
    }
}

/// The archive names its own directory, so unpacking two versions side by side is safe.
#[test]
fn archives_unpack_into_one_versioned_directory() {
    for arch in ["x86_64", "aarch64"] {
        let archive = dist_dir().join(format!("{}.tar.gz", archive_stem(arch)));
        let list = run(Command::new("tar").arg("-tzf").arg(&archive));
        let stem = archive_stem(arch);
        let outside: Vec<&str> = list
            .lines()
            .filter(|l| !l.starts_with(&format!("{stem}/")))
            .collect();
        assert!(outside.is_empty(), "{arch}: {outside:?}");
    }
}

/// The completions go to standard output like any result: a full disk is one line and a
/// non-zero exit, a reader that goes away ends the command cleanly (no panic either way).
#[test]
fn completions_to_a_full_or_closed_output_end_cleanly() {
    let bin = unpacked(std::env::consts::ARCH).join("btrace");
    let full = std::fs::File::create("/dev/full").unwrap();
    let out = Command::new(&bin)
        .args(["generate", "complete-bash"])
        .stdout(full)
        .output()
        .unwrap();
    let e = common::one_line_error(&out);
    assert!(e.contains("writing the completions"), "{e}");
    let out = run(Command::new("bash").arg("-c").arg(format!(
        "(sleep 0.3; exec {} generate complete-zsh) | true; echo ${{PIPESTATUS[0]}}",
        bin.display()
    )));
    assert_eq!(out.trim(), "0");
}
