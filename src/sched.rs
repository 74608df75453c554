//! Run-queue latency: how long runnable tasks wait for a CPU, as a log2 histogram kept in
//! the kernel (src/bpf/sched.bpf.c). Used by `btrace top`.

use std::fmt;

use anyhow::Result;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use crate::attach;
use crate::histogram::{Log2Hist, BUCKETS};
use crate::percpu;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/sched.skel.rs"));
}
pub use skel::SchedSkel;
use skel::{types, SchedSkelBuilder};

/// The hooks and per-task store, cheapest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// tp_btf on the sched tracepoints, wake time in task storage (5.11+).
    TpBtfTask,
    /// raw_tp, wake time in a bounded hash keyed by pid.
    RawTpHash,
}

pub const WAYS: [Way; 2] = [Way::TpBtfTask, Way::RawTpHash];

impl fmt::Display for Way {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Way::TpBtfTask => "tp_btf+task_storage",
            Way::RawTpHash => "raw_tp+hash",
        })
    }
}

/// Opens and loads the programs of one way without attaching them: the caller attaches
/// (and detaches, and re-attaches) them, e.g. with `attach::attach_loaded`.
pub fn open_load(way: Way) -> Result<SchedSkel<'static>> {
    let mut open = SchedSkelBuilder::default().open(attach::skel_storage())?;
    let btf = way == Way::TpBtfTask;
    let p = &mut open.progs;
    p.sched_wakeup_btf.set_autoload(btf);
    p.sched_wakeup_new_btf.set_autoload(btf);
    p.sched_switch_btf.set_autoload(btf);
    p.sched_wakeup_raw.set_autoload(!btf);
    p.sched_wakeup_new_raw.set_autoload(!btf);
    p.sched_switch_raw.set_autoload(!btf);
    if btf {
        open.maps.queued_hash.set_max_entries(1)?;
    } else {
        open.maps.queued_task.set_autocreate(false)?;
    }
    Ok(open.load()?)
}

/// Writes the run-time process filter (0 = every process) without reloading.
pub fn set_live_tgid(skel: &mut SchedSkel, tgid: u32) {
    if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
        bss.live_tgid = tgid;
    }
}

/// Marks wake times stored before `now_ns` (CLOCK_MONOTONIC) as stale: set before
/// re-attaching, so a task woken while the programs were detached is not measured.
pub fn set_epoch(skel: &mut SchedSkel, now_ns: u64) {
    if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
        bss.epoch_ns = now_ns;
    }
}

// SAFETY: a plain C struct of integers, as generated from the BPF object's BTF.
unsafe impl plain::Plain for types::hist {}

/// The cumulative run-queue latency histogram, CPUs summed.
pub fn read_total(skel: &SchedSkel) -> Result<Log2Hist> {
    let mut sum = Log2Hist::default();
    for cpu in percpu::values::<types::hist>(&skel.maps.runq, 0)? {
        let mut buckets = [0u64; BUCKETS];
        buckets.copy_from_slice(&cpu.buckets[..BUCKETS]);
        sum.add(&Log2Hist {
            count: cpu.count,
            sum_ns: cpu.sum_ns,
            buckets,
        });
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_and_user_bucket_counts_agree() {
        assert_eq!(types::hist::default().buckets.len(), BUCKETS);
    }
}
