//! Facts about the running system and the checks every command makes before loading
//! anything: privileges, kernel BTF, tracefs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// Capability numbers from linux/capability.h.
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// The effective capability set of this process (CapEff in /proc/self/status).
pub fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub fn has_cap(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// Tracing needs CAP_BPF and CAP_PERFMON (5.8+), or CAP_SYS_ADMIN which implies both.
pub fn missing_tracing_caps(caps: u64) -> Vec<&'static str> {
    if has_cap(caps, CAP_SYS_ADMIN) {
        return Vec::new();
    }
    let mut missing = Vec::new();
    if !has_cap(caps, CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has_cap(caps, CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    missing
}

pub fn require_privileges() -> Result<()> {
    let missing = missing_tracing_caps(effective_caps());
    if !missing.is_empty() {
        bail!(
            "not enough privileges: missing {}; run btrace as root (sudo) or grant CAP_BPF and CAP_PERFMON",
            missing.join(" and ")
        );
    }
    Ok(())
}

pub fn has_btf() -> bool {
    Path::new(BTF_PATH).exists()
}

pub fn require_btf() -> Result<()> {
    if !has_btf() {
        bail!(
            "this kernel exposes no BTF ({BTF_PATH} is missing); btrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (Linux 5.8 or newer)"
        );
    }
    Ok(())
}

/// Checks shared by every tracing command, in the order a user should fix them.
pub fn preflight() -> Result<()> {
    require_privileges()?;
    require_btf()
}

/// `uname -r`.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

const TRACEFS_DIRS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracefs directory, mounting tracefs on /sys/kernel/tracing when it is missing.
/// Classic tracepoints and legacy kprobes need it; tp_btf, raw_tp and fentry do not.
pub fn ensure_tracefs() -> Result<PathBuf> {
    if let Some(dir) = tracefs_dir() {
        return Ok(dir);
    }
    let target = Path::new(TRACEFS_DIRS[0]);
    nix::mount::mount(
        Some("nodev"),
        target,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| {
        format!(
            "tracefs is not mounted and mounting it on {} failed; mount it with `mount -t tracefs nodev {}`",
            target.display(),
            target.display()
        )
    })?;
    Ok(target.to_path_buf())
}

/// The mounted tracefs directory, if any.
pub fn tracefs_dir() -> Option<PathBuf> {
    TRACEFS_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|d| d.join("events").is_dir())
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of bpf_ktime_get_ns(), so kernel timestamps
/// can be turned into "seconds since tracing began".
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills one timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether standard output is a pipe whose reader has gone (`btrace ... | head -0`).
/// A closed pipe is otherwise only noticed on the next write, and a quiet trace may
/// never write again; the write end of such a pipe polls as POLLERR.
pub fn stdout_reader_gone() -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(&stdout),
        PollFlags::empty(),
    )];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR))
}

/// CPUs online now (the share of the machine a figure is relative to).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}
