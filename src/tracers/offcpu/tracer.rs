// SPDX-License-Identifier: Apache-2.0
//! The off-CPU profiler: time tasks spend blocked, by stack, from sched_switch to
//! sched_wakeup (offcpu.bpf.c), the cheapest way this kernel allows: tp_btf with task storage, else
//! raw_tp with a bounded hash.

use anyhow::{Context, Result};
use libbpf_rs::Link;

use crate::core::attach::{Links, TaskWay};
use crate::core::kmem::Driver;
use crate::core::lifecycle::{self, Declaration, Tree};
use crate::core::rodata;
use crate::core::scope::Scope;
use crate::core::stack_run::StackSettings;

use super::skel::{Offcpu, OffcpuKind, OffcpuSkel, OpenOffcpuSkel};

/// Bound of each counts buffer, and of the hash store (threads blocked at once).
pub const MAX_COUNTS: u32 = 65536;
pub const MAX_BLOCKED: u32 = 65536;
pub const MAX_PROCS: u32 = 65536;

pub struct Config {
    pub scope: Scope,
    pub min_block_ns: u64,
    pub stacks: StackSettings,
}

/// The profiler's double-buffered tables.
pub fn table_maps(o: &Offcpu) -> crate::core::stack_tables::TableMaps<'_> {
    crate::stack_table_maps!(o)
}

/// The off-CPU profiler as core::lifecycle drives it: the config is the declaration.
impl Declaration for Config {
    type Kind = OffcpuKind;
    type Way = TaskWay;
    const DRIVERS: &'static [Driver] = &[crate::core::stack_tables::STACKS_DRIVER];
    // Process tracking and the tree before the switches are seen.
    const TREE: Tree = Tree::First;

    fn scope(&self) -> &Scope {
        &self.scope
    }

    fn stack_tables(&self) -> Option<(u32, u32)> {
        Some((self.stacks.max_stacks, self.stacks.max_counts))
    }

    fn configure(&self, way: TaskWay, open: &mut OpenOffcpuSkel<'_>) -> Result<()> {
        {
            let ro = rodata::typed(&mut open.maps.rodata_data);
            ro.min_block_ns = self.min_block_ns;
            ro.want_kernel = self.stacks.kernel;
            ro.want_user = self.stacks.user;
        }
        open.maps.proc_gens.set_max_entries(MAX_PROCS)?;
        let btf = way == TaskWay::TpBtfTask;
        open.progs.offcpu_switch_btf.set_autoload(btf);
        open.progs.offcpu_switch_raw.set_autoload(!btf);
        open.progs.offcpu_wakeup_btf.set_autoload(btf);
        open.progs.offcpu_wakeup_raw.set_autoload(!btf);
        if btf {
            open.maps.start_hash.set_max_entries(1)?;
        } else {
            open.maps.start_task.set_autocreate(false)?;
            open.maps.start_hash.set_max_entries(MAX_BLOCKED)?;
        }
        Ok(())
    }

    fn hooks(&self, way: TaskWay, skel: &OffcpuSkel<'_>, links: &mut Links) -> Result<()> {
        let sw = match way {
            TaskWay::TpBtfTask => skel.progs.offcpu_switch_btf.attach(),
            TaskWay::RawTpHash => skel.progs.offcpu_switch_raw.attach(),
        }
        .context("attaching to sched_switch")?;
        links.push(sw);
        let wake = match way {
            TaskWay::TpBtfTask => skel.progs.offcpu_wakeup_btf.attach(),
            TaskWay::RawTpHash => skel.progs.offcpu_wakeup_raw.attach(),
        }
        .context("attaching to sched_wakeup")?;
        links.push(wake);
        Ok(())
    }
}

/// Loads and attaches the cheapest way this kernel accepts.
pub fn load(cfg: &Config) -> Result<(TaskWay, Offcpu, Vec<Link>)> {
    let (way, o, links) = lifecycle::load_first(cfg, &TaskWay::ALL)?;
    Ok((way, o, links.into_vec()))
}

/// Whether the profiler works here (btrace doctor): loaded and attached for real.
pub fn check() -> Result<String> {
    let (way, ..) = load(&Config {
        scope: Scope::default(),
        min_block_ns: 0,
        stacks: StackSettings::CHECK,
    })?;
    Ok(format!("via {way}"))
}

/// `--min-block US`: microseconds, as a bound in nanoseconds.
pub fn parse_min_block(s: &str) -> std::result::Result<u64, String> {
    match s.parse::<u64>() {
        Ok(us) if us <= 3_600_000_000 => Ok(us * 1000),
        _ => Err(format!(
            "'{s}' is not a number of microseconds (0 to 3600000000)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_block() {
        assert_eq!(parse_min_block("50"), Ok(50_000));
        assert!(parse_min_block("-1").is_err());
    }
}
