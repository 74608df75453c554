//! The scope filter's user side: which tasks a tracer records (src/bpf/include/scope.h).
//! The target (`-p`/`-c`) comes from the session; `--tid` and `--comm` from [`ScopeArgs`].
//! Every tracer takes the same [`Scope`] and writes it into its rodata with
//! [`set_scope_rodata!`](crate::set_scope_rodata), so every command means the same.

use anyhow::{bail, Result};
use clap::Args;

use crate::core::abi::COMM_LEN;

#[derive(Args, Debug, Clone, Default)]
pub struct ScopeArgs {
    /// Trace only this thread id
    #[arg(long, value_name = "TID", value_parser = clap::value_parser!(u32).range(1..))]
    pub tid: Option<u32>,
    /// Trace only tasks with this name (as in /proc/PID/comm; longer names are cut to 15 characters like the kernel's)
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
}

/// The whole load-time scope, as the kernel programs take it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Only this process (thread group id); 0 = any.
    pub tgid: u32,
    /// Only this thread; 0 = any.
    pub tid: u32,
    /// NUL-padded comm, when filtering by name.
    pub comm: Option<[u8; COMM_LEN]>,
}

impl Scope {
    pub fn new(tgid: Option<u32>, args: &ScopeArgs) -> Result<Self> {
        if let Some(tid) = args.tid {
            match crate::core::target::task_info(tid) {
                None => bail!("no thread with id {tid}"),
                Some(t) if tgid.is_some_and(|p| p != t.tgid) => bail!(
                    "thread {tid} belongs to process {}, not to the traced process {}",
                    t.tgid,
                    tgid.unwrap_or(0)
                ),
                Some(_) => {}
            }
        }
        Ok(Scope {
            tgid: tgid.unwrap_or(0),
            tid: args.tid.unwrap_or(0),
            comm: args.comm.as_deref().map(comm_bytes).transpose()?,
        })
    }

    /// Only the process `tgid` (None: everything).
    pub fn process(tgid: Option<u32>) -> Self {
        Scope {
            tgid: tgid.unwrap_or(0),
            ..Default::default()
        }
    }

    /// The name filter as C `char` values, for a skeleton's rodata.
    pub fn comm_chars(&self) -> [i8; COMM_LEN] {
        self.comm.unwrap_or_default().map(|b| b as i8)
    }
}

/// Writes a [`Scope`] into an open skeleton's rodata (every tracer's rodata has the
/// scope.h fields): `set_scope_rodata!(rodata, &scope)`.
#[macro_export]
macro_rules! set_scope_rodata {
    ($ro:expr, $scope:expr) => {{
        let ro = $ro;
        let scope: &$crate::core::scope::Scope = $scope;
        ro.scope_tgid = scope.tgid;
        ro.scope_tid = scope.tid;
        ro.scope_by_comm = scope.comm.is_some();
        ro.scope_comm = scope.comm_chars();
    }};
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
    }
}
