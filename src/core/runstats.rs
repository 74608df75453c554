// SPDX-License-Identifier: Apache-2.0
//! The kernel's own BPF run-time statistics: with BPF_ENABLE_STATS held, every program
//! run adds to its `run_cnt` and `run_time_ns` (read with BPF_OBJ_GET_INFO_BY_FD).
//! Accounting costs two clock reads per run, so it is on only while the dashboard runs.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use anyhow::{bail, Result};

/// Run-time statistics switched on for as long as this value lives.
pub struct RunStats {
    _enabled: OwnedFd,
}

impl RunStats {
    /// Fails when the kernel refuses (before 5.8, or without CAP_SYS_ADMIN).
    pub fn enable() -> Result<RunStats> {
        // SAFETY: plain syscall wrapper; returns a new fd or a negative errno.
        let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
        if fd < 0 {
            bail!(
                "BPF run-time statistics unavailable: {}",
                std::io::Error::from_raw_os_error(-fd)
            );
        }
        Ok(RunStats {
            // SAFETY: fd is fresh and owned by nobody else; closing it turns the stats off.
            _enabled: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }
}

/// One program's cumulative counters as the kernel reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgRunTime {
    pub run_cnt: u64,
    pub run_time_ns: u64,
    /// Runs skipped because the program was already running on that CPU.
    pub recursion_misses: u64,
}

impl ProgRunTime {
    pub fn add(&mut self, o: &ProgRunTime) {
        self.run_cnt += o.run_cnt;
        self.run_time_ns += o.run_time_ns;
        self.recursion_misses += o.recursion_misses;
    }

    pub fn since_saturating(&self, earlier: &ProgRunTime) -> ProgRunTime {
        ProgRunTime {
            run_cnt: self.run_cnt.saturating_sub(earlier.run_cnt),
            run_time_ns: self.run_time_ns.saturating_sub(earlier.run_time_ns),
            recursion_misses: self
                .recursion_misses
                .saturating_sub(earlier.recursion_misses),
        }
    }
}

/// The counters of the program behind `fd`.
pub fn prog_run_time(fd: BorrowedFd) -> Result<ProgRunTime> {
    prog_stats(fd).map(|(_, r)| r)
}

/// The name (as the kernel keeps it: 15 characters at most) and counters of the program
/// behind `fd`.
pub fn prog_stats(fd: BorrowedFd) -> Result<(String, ProgRunTime)> {
    // SAFETY: bpf_prog_info is plain data (integers and pointers), valid all zero.
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: the kernel fills at most `len` bytes of `info`, which lives across the call.
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if rc < 0 {
        bail!(
            "reading BPF program info: {}",
            std::io::Error::from_raw_os_error(-rc)
        );
    }
    // c_char is i8 on x86_64 and u8 on aarch64: the cast is needed on one of them only.
    #[allow(clippy::unnecessary_cast)]
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok((
        String::from_utf8_lossy(&name).into_owned(),
        ProgRunTime {
            run_cnt: info.run_cnt,
            run_time_ns: info.run_time_ns,
            recursion_misses: info.recursion_misses,
        },
    ))
}

impl crate::model::delta::Cumulative for ProgRunTime {
    fn since(&self, earlier: &Self) -> Option<Self> {
        (self.run_cnt >= earlier.run_cnt).then(|| self.since_saturating(earlier))
    }
}
