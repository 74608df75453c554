// SPDX-License-Identifier: Apache-2.0
//! Syscall numbers and names of the architecture btrace is built for, from the
//! `syscalls` crate's table.

use anyhow::{bail, Result};
use syscalls::Sysno;

use crate::model::abi::SYSCALL_OTHER;

/// The name of a syscall slot: `other` for the slot of numbers outside the table.
pub fn name(nr: u32) -> String {
    if nr == SYSCALL_OTHER {
        return "other".into();
    }
    Sysno::new(nr as usize)
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| format!("syscall_{nr}"))
}

pub fn number(name: &str) -> Option<u32> {
    name.parse::<Sysno>().ok().map(|s| s.id() as u32)
}

/// The number of syscall `name` for a kernel program's rodata, or `none` where the
/// architecture has no such call (arm64 has no open, creat, fork or vfork).
pub fn number_or(name: &str, none: i64) -> i64 {
    number(name).map_or(none, i64::from)
}

/// Sets each `nr_NAME` rodata field of a kernel program (regs.h SYSCALL_NR_VAR) to syscall
/// NAME's number on the target architecture; a call it does not have keeps the program's
/// default (SYSCALL_NR_NONE, which no call matches). The field names the call, so no
/// number is written twice: `syscall_nrs!(ro, nr_execve, nr_execveat)`.
#[macro_export]
macro_rules! syscall_nrs {
    ($rodata:expr, $($field:ident),+ $(,)?) => {{
        let ro = $rodata;
        $(ro.$field = $crate::resolve::syscalls::number_or(
            &stringify!($field)["nr_".len()..],
            ro.$field,
        );)+
    }};
}

/// Up to three known names close to `wrong`, closest first.
pub fn suggestions(wrong: &str) -> Vec<&'static str> {
    let mut scored: Vec<(f64, &'static str)> = Sysno::iter()
        .map(|s| (strsim::jaro_winkler(wrong, s.name()), s.name()))
        .filter(|(score, _)| *score > 0.85)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(3).map(|(_, n)| n).collect()
}

/// "read,write,openat" -> syscall numbers, each once; an unknown name is an error naming
/// close ones.
pub fn parse_list(list: &str) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for n in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match number(n) {
            Some(nr) if out.contains(&nr) => {}
            Some(nr) => out.push(nr),
            None => {
                let close = suggestions(n);
                if close.is_empty() {
                    bail!("unknown syscall '{n}'");
                }
                bail!("unknown syscall '{n}' (did you mean {}?)", close.join(", "));
            }
        }
    }
    if out.is_empty() {
        bail!("--syscalls needs at least one syscall name, e.g. --syscalls read,write");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let nr = number("getppid").unwrap();
        assert_eq!(name(nr), "getppid");
        assert_eq!(name(100_000), "syscall_100000");
        assert_eq!(name(SYSCALL_OTHER), "other");
        assert_eq!(parse_list("read, read,write").unwrap().len(), 2);
    }

    #[test]
    fn numbers_for_kernel_programs_come_from_the_target_table() {
        assert_eq!(number_or("execve", -1), Sysno::execve.id() as i64);
        assert_eq!(number_or("no_such_call", -7), -7);
        #[cfg(target_arch = "aarch64")]
        assert_eq!(number_or("open", -7), -7);
    }

    #[test]
    fn unknown_name_suggests_close_ones() {
        let e = parse_list("read,opnat").unwrap_err().to_string();
        assert!(e.contains("unknown syscall 'opnat'"), "{e}");
        assert!(e.contains("openat"), "{e}");
    }
}
