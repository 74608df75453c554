// SPDX-License-Identifier: Apache-2.0
//! The CPU profiler: one software-clock perf event per online CPU (cpu-clock: no
//! hardware counters needed, so it works in VMs), each running profile.bpf.c's program,
//! which counts samples by stack in the kernel.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use anyhow::{bail, Context, Result};
use libbpf_rs::Link;

use crate::core::attach::Links;
use crate::core::kmem::Driver;
use crate::core::lifecycle::{self, Declaration, Tree};
use crate::core::rodata;
use crate::core::scope::Scope;
use crate::core::stack_run::StackSettings;

use super::skel::{OpenProfileSkel, Profile, ProfileKind, ProfileSkel};

/// Sampling rates accepted (per second, per CPU).
pub const MIN_HZ: u64 = 1;
pub const MAX_HZ: u64 = 10_000;
pub const DEFAULT_HZ: u64 = 49;
/// Bound of each counts buffer (distinct (thread, stacks) pairs between two drains).
pub const MAX_COUNTS: u32 = 65536;
/// Bound of the process store (processes with user stacks).
pub const MAX_PROCS: u32 = 65536;

pub fn parse_hz(s: &str) -> std::result::Result<u64, String> {
    match s.parse::<u64>() {
        Ok(v) if (MIN_HZ..=MAX_HZ).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a sampling rate btrace takes: {MIN_HZ} to {MAX_HZ} samples per second per CPU"
        )),
    }
}

pub struct Config {
    pub scope: Scope,
    pub hz: u64,
    pub stacks: StackSettings,
}

/// The loaded profiler: its object and its links (each perf event's, which owns the
/// event, and the process tracking's: cleared to stop sampling before the last drain).
pub struct Loaded {
    pub skel: Profile,
    pub links: Vec<Link>,
    pub cpus: Vec<u32>,
}

/// The profiler's double-buffered tables.
pub fn table_maps(p: &Profile) -> crate::core::stack_tables::TableMaps<'_> {
    crate::stack_table_maps!(p)
}

/// Online CPUs, from /sys/devices/system/cpu/online ("0-3,5").
pub fn online_cpus() -> Result<Vec<u32>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .context("reading /sys/devices/system/cpu/online")?;
    parse_cpu_list(text.trim())
}

pub fn parse_cpu_list(s: &str) -> Result<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<u32>()?..=b.parse::<u32>()?),
            None => cpus.push(part.parse()?),
        }
    }
    Ok(cpus)
}

/// One cpu-clock perf event on `cpu`, every `period_ns` of that CPU's time, counting
/// whatever runs there.
fn open_cpu_clock(cpu: u32, period_ns: u64) -> std::io::Result<OwnedFd> {
    // SAFETY: perf_event_attr is a plain C struct; all-zero is its documented default.
    let mut attr: libbpf_sys::perf_event_attr = unsafe { std::mem::zeroed() };
    attr.type_ = libbpf_sys::PERF_TYPE_SOFTWARE;
    attr.size = std::mem::size_of::<libbpf_sys::perf_event_attr>() as u32;
    attr.config = libbpf_sys::PERF_COUNT_SW_CPU_CLOCK as u64;
    attr.__bindgen_anon_1.sample_period = period_ns;
    // SAFETY: perf_event_open with a valid attr for this call's duration; pid -1 with a
    // cpu counts every task on it; the returned descriptor is owned below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const libbpf_sys::perf_event_attr,
            -1 as libc::pid_t,
            cpu as libc::c_int,
            -1 as libc::c_int,
            libbpf_sys::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor this process owns and nothing else refers to.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// One load of the profiler as core::lifecycle drives it: its config and the CPUs it
/// samples.
struct ProfileLoad<'a> {
    cfg: &'a Config,
    cpus: &'a [u32],
}

impl Declaration for ProfileLoad<'_> {
    type Kind = ProfileKind;
    /// One way: cpu-clock perf events.
    type Way = ();
    const DRIVERS: &'static [Driver] = &[crate::core::stack_tables::STACKS_DRIVER];
    // The process tree and the process tracking first, then the samples.
    const TREE: Tree = Tree::First;

    fn scope(&self) -> &Scope {
        &self.cfg.scope
    }

    fn stack_tables(&self) -> Option<(u32, u32)> {
        Some((self.cfg.stacks.max_stacks, self.cfg.stacks.max_counts))
    }

    fn configure(&self, _way: (), open: &mut OpenProfileSkel<'_>) -> Result<()> {
        {
            let ro = rodata::typed(&mut open.maps.rodata_data);
            ro.want_kernel = self.cfg.stacks.kernel;
            ro.want_user = self.cfg.stacks.user;
        }
        open.maps.proc_gens.set_max_entries(MAX_PROCS)?;
        Ok(())
    }

    fn hooks(&self, _way: (), skel: &ProfileSkel<'_>, links: &mut Links) -> Result<()> {
        let period = 1_000_000_000 / self.cfg.hz;
        let mut events = 0;
        for &cpu in self.cpus {
            let fd = open_cpu_clock(cpu, period).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) => anyhow::anyhow!(
                    "this kernel has no cpu-clock perf event (CONFIG_PERF_EVENTS): {e}"
                ),
                Some(libc::EACCES) | Some(libc::EPERM) => anyhow::anyhow!(
                    "perf events on every CPU are not allowed here ({e}): btrace needs CAP_PERFMON (or CAP_SYS_ADMIN); see /proc/sys/kernel/perf_event_paranoid"
                ),
                _ => anyhow::anyhow!("opening the cpu-clock perf event on CPU {cpu}: {e}"),
            })?;
            let link = skel
                .progs
                .profile_sample
                .attach_perf_event(fd.as_raw_fd())
                .with_context(|| format!("attaching the sampler to CPU {cpu}"))?;
            links.push(link);
            // The link owns the event now: libbpf closes it when the link is destroyed.
            let _ = fd.into_raw_fd();
            events += 1;
        }
        if events == 0 {
            bail!("no online CPU to sample");
        }
        Ok(())
    }
}

/// Loads the profiler and starts sampling on every online CPU.
pub fn load(cfg: &Config) -> Result<Loaded> {
    let cpus = online_cpus()?;
    let (skel, links) = lifecycle::load_way(&ProfileLoad { cfg, cpus: &cpus }, ())?;
    Ok(Loaded {
        skel,
        links: links.into_vec(),
        cpus,
    })
}

/// Whether the profiler works here (btrace doctor): loaded and attached for real.
pub fn check() -> Result<String> {
    let l = load(&Config {
        scope: Scope::default(),
        hz: DEFAULT_HZ,
        stacks: StackSettings::CHECK,
    })?;
    Ok(format!("cpu-clock perf events on {} CPUs", l.cpus.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,5").unwrap(), vec![0, 1, 2, 3, 5]);
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert!(parse_cpu_list("x").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_hz("99"), Ok(99));
        assert!(parse_hz("0").is_err());
        assert!(parse_hz("100000").unwrap_err().contains("1 to 10000"));
    }
}
