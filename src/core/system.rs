// SPDX-License-Identifier: Apache-2.0
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

/// Whether this process runs in the initial user namespace. Capabilities held in another
/// one (`unshare -U -r`, rootless containers) do not allow loading tracing programs.
/// The initial namespace maps every uid: its uid_map is the single line `0 0 4294967295`.
pub fn in_initial_user_ns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| {
            let words: Vec<&str> = m.split_whitespace().collect();
            words == ["0", "0", "4294967295"]
        })
        .unwrap_or(true)
}

pub const USER_NS_LINE: &str = "running in a user namespace: capabilities held there (root in `unshare -U -r`, rootless containers) do not allow BPF; run it in the host's user namespace (as root, or a privileged container)";

pub fn require_privileges() -> Result<()> {
    if let Some(why) = crate::core::target::proc_unreadable() {
        bail!("{why}");
    }
    if !in_initial_user_ns() {
        bail!("{USER_NS_LINE}");
    }
    let missing = missing_tracing_caps(effective_caps());
    if !missing.is_empty() {
        bail!(
            "not enough privileges: missing {}; run btrace as root (sudo) or grant CAP_BPF and CAP_PERFMON",
            missing.join(" and ")
        );
    }
    Ok(())
}

/// Where btrace's BTF comes from: `--btf FILE` first, then `BTRACE_BTF`. Checked here,
/// before any command reads it (see `check_btf_file`).
pub fn set_custom_btf(flag: Option<PathBuf>) -> Result<()> {
    let chosen = flag.or_else(|| std::env::var_os("BTRACE_BTF").map(PathBuf::from));
    if let Some(p) = chosen {
        check_btf_file(&p)?;
        crate::resolve::btf::set_custom(p);
    }
    Ok(())
}

pub use crate::resolve::btf::custom_btf;

/// The BTF btrace reads: the user's file, or the kernel's.
pub fn btf_path() -> &'static Path {
    custom_btf().unwrap_or(Path::new(BTF_PATH))
}

/// Whether the kernel exposes its BTF (present, readable, not empty).
pub fn has_btf() -> bool {
    std::fs::metadata(BTF_PATH).is_ok_and(|m| m.len() > 0) && std::fs::File::open(BTF_PATH).is_ok()
}

const BTF_ADVICE: &str = "give btrace a BTF file for this kernel with --btf FILE (or BTRACE_BTF=FILE): btfhub publishes them for many distribution kernels, and `pahole --btf_encode_detached FILE vmlinux` or `bpftool btf dump` make one from a kernel built with debug info";

/// The BTF btrace will use is there and readable; one line naming --btf otherwise.
pub fn require_btf() -> Result<()> {
    if let Some(p) = custom_btf() {
        if let Err(e) = std::fs::metadata(p) {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                _ => format!("cannot read it: {e}"),
            };
            bail!("--btf {}: {why}; {BTF_ADVICE}", p.display());
        }
        return match libbpf_rs::btf::Btf::from_path(p) {
            Ok(_) => Ok(()),
            Err(e) => bail!(
                "--btf {}: not a BTF file btrace can read ({e}); {BTF_ADVICE}",
                p.display()
            ),
        };
    }
    let why = match std::fs::metadata(BTF_PATH) {
        Err(_) => "is missing",
        Ok(m) if m.len() == 0 => "is empty",
        Ok(_) if std::fs::File::open(BTF_PATH).is_err() => "is not readable",
        Ok(_) => return Ok(()),
    };
    bail!(
        "this kernel's BTF {BTF_PATH} {why} (the kernel was built without CONFIG_DEBUG_INFO_BTF, or it is hidden); {BTF_ADVICE}"
    )
}

/// A `--btf` file must be a regular file, checked before anything opens it (a FIFO would
/// block the open for ever), and not one of the run's outputs.
fn check_btf_file(p: &Path) -> Result<()> {
    if let Some(why) = crate::resolve::not_regular_file(p) {
        bail!("--btf {why}; {BTF_ADVICE}");
    }
    crate::core::output::input(p, "--btf")
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

/// Where tracefs is mounted (from /proc/mounts), readable or not.
pub fn tracefs_mount() -> Option<PathBuf> {
    crate::resolve::mount_point("tracefs")
}

/// The mount namespace btrace started in, when [`ensure_tracefs`] has moved btrace into
/// one of its own.
static SYSTEM_MOUNT_NS: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();

/// A descriptor of the system's mount namespace when btrace has left it to mount tracefs
/// for itself (a `-c` command joins it again before its exec), else None.
pub fn system_mount_ns() -> Option<std::os::fd::RawFd> {
    use std::os::fd::AsRawFd;
    SYSTEM_MOUNT_NS.get().map(|fd| fd.as_raw_fd())
}

/// The tracefs directory, mounting tracefs on /sys/kernel/tracing when it is missing.
/// Classic tracepoints and legacy kprobes need it; tp_btf, raw_tp and fentry do not.
///
/// btrace mounts it only for itself: its thread first moves to a mount namespace of its
/// own, with every mount made private there, so the system's mount table never changes
/// and nothing is left mounted when btrace ends, however it ends. A `-c` command stays in
/// the system's namespace: one forked before stays there, one forked after joins it
/// again before its exec ([`system_mount_ns`]).
pub fn ensure_tracefs() -> Result<PathBuf> {
    if let Some(dir) = tracefs_dir() {
        return Ok(dir);
    }
    if let Some(dir) = tracefs_mount() {
        // Mounted, but not readable by this process (mode 0700, owned by root).
        let mode = std::fs::metadata(&dir)
            .map(|m| {
                format!(
                    "{:o}",
                    std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777
                )
            })
            .unwrap_or_else(|_| "unknown".into());
        bail!(
            "tracefs is mounted at {} but not readable by this user (mode {mode}): run as root, or let this user read it (e.g. mount -o remount,mode=755 {})",
            dir.display(),
            dir.display()
        );
    }
    let target = Path::new(TRACEFS_DIRS[0]);
    let failed = || {
        format!(
            "tracefs is not mounted and mounting it (for btrace alone) on {} failed; mount it with `mount -t tracefs nodev {}`",
            target.display(),
            target.display()
        )
    };
    use nix::mount::{mount, MsFlags};
    // The system's namespace, kept so that a -c command forked after this point (some
    // commands need tracefs before their session starts) is put back into it.
    if let Ok(ns) = std::fs::File::open("/proc/thread-self/ns/mnt") {
        let _ = SYSTEM_MOUNT_NS.set(std::os::fd::OwnedFd::from(ns));
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).with_context(failed)?;
    // Private from here down: nothing mounted below propagates back to the system's
    // namespace (where / is usually shared).
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .with_context(failed)?;
    mount(
        Some("nodev"),
        target,
        Some("tracefs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .with_context(failed)?;
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

/// The size of a memory page.
pub fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
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

/// Kernel memory a preallocated hash of `entries` takes, roughly: each element carries
/// about 48 bytes of the kernel's own beside its key and value (8-byte aligned).
pub fn hash_store_bytes(entries: u64, key: u64, value: u64) -> u64 {
    entries * (48 + key.div_ceil(8) * 8 + value.div_ceil(8) * 8)
}

/// A store size as the user reads it: "512 MB".
pub fn fmt_bytes(b: u64) -> String {
    const MB: u64 = 1 << 20;
    if b >= 10 << 30 {
        format!("{:.1} GB", b as f64 / (1u64 << 30) as f64)
    } else if b >= MB {
        format!("{} MB", b / MB)
    } else {
        format!("{} KB", b.div_ceil(1024))
    }
}

/// Parses a store bound given on the command line: at least 1, at most `max` (`why` says
/// where the limit comes from); beyond it, the message says what the store would cost.
pub fn parse_store_size(
    s: &str,
    max: u32,
    why: &str,
    key: u64,
    value: u64,
) -> std::result::Result<u32, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number of entries"))?;
    if n == 0 {
        return Err("a store needs at least 1 entry".into());
    }
    if n > u64::from(max) {
        return Err(format!(
            "{n} entries is beyond the limit of {max} ({why}); such a store would take about {} of kernel memory",
            fmt_bytes(hash_store_bytes(n, key, value))
        ));
    }
    Ok(n as u32)
}

/// The default bound of a per-thread hash store (threads that use it, alive at once):
/// room for every thread alive now, twice over, and at least 32768.
pub fn default_thread_entries() -> u32 {
    // /proc/loadavg's fourth field is "runnable/total" scheduling entities (threads).
    let threads = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok())
        .unwrap_or(0u32);
    threads.saturating_mul(2).max(32768)
}

/// CPUs online now (the share of the machine a figure is relative to).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}
