//! The task filters of event-streaming commands beyond the common `-p`/`-c`: a thread id
//! and a command name. They are fixed at start, so the kernel programs take them as
//! load-time constants (DECLARE_TASK_FILTER in src/bpf/common.h).

use anyhow::{bail, Result};
use clap::Args;

/// The kernel keeps 15 characters of a task's name (TASK_COMM_LEN 16 with the NUL).
pub const COMM_LEN: usize = 16;

#[derive(Args, Debug, Clone, Default)]
pub struct TaskFilterArgs {
    /// Trace only this thread id
    #[arg(long, value_name = "TID", value_parser = clap::value_parser!(u32).range(1..))]
    pub tid: Option<u32>,
    /// Trace only tasks with this name (as in /proc/PID/comm; longer names are cut to 15 characters like the kernel's)
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
}

/// All filters, as the kernel programs take them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub tgid: u32,
    pub tid: u32,
    /// NUL-padded comm, when filtering by name.
    pub comm: Option<[u8; COMM_LEN]>,
}

impl TaskFilter {
    pub fn new(tgid: Option<u32>, args: &TaskFilterArgs) -> Result<Self> {
        Ok(TaskFilter {
            tgid: tgid.unwrap_or(0),
            tid: args.tid.unwrap_or(0),
            comm: args.comm.as_deref().map(comm_bytes).transpose()?,
        })
    }

    /// The filter as C `char` values, for a skeleton's rodata.
    pub fn comm_chars(&self) -> [i8; COMM_LEN] {
        self.comm.unwrap_or_default().map(|b| b as i8)
    }
}

/// `name` as the kernel stores a comm: at most 15 bytes, NUL-padded.
pub fn comm_bytes(name: &str) -> Result<[u8; COMM_LEN]> {
    if name.is_empty() {
        bail!("--comm needs a non-empty name");
    }
    let mut out = [0u8; COMM_LEN];
    let b = name.as_bytes();
    let n = b.len().min(COMM_LEN - 1);
    out[..n].copy_from_slice(&b[..n]);
    Ok(out)
}

/// A comm from the kernel (C chars, NUL-terminated) as text.
pub fn comm_text(chars: &[i8]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .map(|&c| c as u8)
        .take_while(|&c| c != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_is_cut_like_the_kernel_does() {
        assert_eq!(&comm_bytes("workload").unwrap()[..9], b"workload\0");
        let long = comm_bytes("systemd-journald").unwrap();
        assert_eq!(&long[..15], b"systemd-journal");
        assert_eq!(long[15], 0);
        assert!(comm_bytes("").is_err());
        assert_eq!(comm_text(&[b'a' as i8, b'b' as i8, 0, b'c' as i8]), "ab");
    }
}
