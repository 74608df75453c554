// SPDX-License-Identifier: Apache-2.0
//! Error numbers by name: `ENOENT` for 2, as the C library names them (through nix's table
//! for this architecture), plus the kernel-internal restart codes a syscall exit can show
//! (they never reach user space: the call is restarted or its signal handled).

use anyhow::{bail, Result};
use nix::errno::Errno;

/// Kernel-internal codes (include/linux/errno.h) seen at syscall exit.
const KERNEL_ONLY: [(i32, &str); 5] = [
    (512, "ERESTARTSYS"),
    (513, "ERESTARTNOINTR"),
    (514, "ERESTARTNOHAND"),
    (515, "ENOIOCTLCMD"),
    (516, "ERESTART_RESTARTBLOCK"),
];

/// The kernel-internal "not supported" (include/linux/errno.h, not EOPNOTSUPP): no C
/// library names it, yet the bpf syscall returns it to user space (an instruction
/// uprobes cannot step, a kprobe on a function that cannot take one, a map without
/// batch operations).
pub const ENOTSUPP: i32 = 524;

/// The name of error number `e` (positive), or None for a number without one.
pub fn name(e: i32) -> Option<String> {
    if let Some((_, n)) = KERNEL_ONLY.iter().find(|(v, _)| *v == e) {
        return Some((*n).to_string());
    }
    let errno = Errno::from_raw(e);
    (errno != Errno::UnknownErrno).then(|| format!("{errno:?}"))
}

/// A syscall's return value as errno name when it is an error (-4095..-1).
pub fn of_ret(ret: i64) -> Option<String> {
    is_error(ret).then(|| name(-ret as i32).unwrap_or_else(|| format!("E{}", -ret)))
}

/// Whether a syscall return value is an error (the kernel's -MAX_ERRNO..-1).
pub fn is_error(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

/// `ENOENT`, `enoent` or `2` as an error number.
pub fn parse(s: &str) -> Result<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        if (1..4096).contains(&n) {
            return Ok(n);
        }
        bail!("--errno {s}: an error number is from 1 to 4095");
    }
    let want = t.to_ascii_uppercase();
    if let Some(n) = (1..4096).find(|&n| name(n).as_deref() == Some(want.as_str())) {
        return Ok(n);
    }
    bail!("--errno {s}: no such error name (e.g. ENOENT, EAGAIN, EACCES)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_both_ways() {
        assert_eq!(name(2).as_deref(), Some("ENOENT"));
        assert_eq!(name(13).as_deref(), Some("EACCES"));
        assert_eq!(name(514).as_deref(), Some("ERESTARTNOHAND"));
        assert_eq!(name(4000), None);
        assert_eq!(parse("enoent").unwrap(), 2);
        assert_eq!(parse("ENOSYS").unwrap(), 38);
        assert_eq!(parse("11").unwrap(), 11);
        assert!(parse("ENOPE").is_err());
        assert!(parse("0").is_err());
        assert_eq!(of_ret(-2).as_deref(), Some("ENOENT"));
        assert_eq!(of_ret(3), None);
        assert_eq!(of_ret(-4000).as_deref(), Some("E4000"));
        assert!(!is_error(-5000));
    }
}
