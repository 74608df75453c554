// SPDX-License-Identifier: Apache-2.0
//! What a tracer could not record, as its kernel programs counted it (the per-CPU `losses`
//! array, one slot per `enum loss_kind` in src/bpf/include/abi.h), and the one way every
//! command reports it: the same JSON keys in every summary, the same words in text.

use anyhow::Result;
use libbpf_rs::MapCore;
use serde_json::{json, Value};

use crate::core::percpu;
use crate::model::abi::types::loss_kind;

/// Loss counters, CPUs summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// Events dropped because the ring buffer was full (user space fell behind).
    pub ringbuf: u64,
    /// Records dropped because a bounded map (a store) was full.
    pub map_full: u64,
    /// Exits (returns) seen without their recorded entry.
    pub no_entry: u64,
    /// Hook hits the tracer's programs were not given: runs the kernel skipped because
    /// the same program was already running on that CPU (bpf_prog_info's
    /// recursion_misses, Linux 5.12+: a program preempted inside a hook that allows it,
    /// as 7.x's syscall tracepoints do, or a hook hit again from inside the program), and
    /// hits the programs found missing afterwards (LOSS_UNSEEN: offcpu's block whose
    /// wakeup and switch back in were both never seen). Each is an event not seen.
    pub missed: u64,
    /// The part of `missed` the programs counted themselves (LOSS_UNSEEN).
    pub(crate) unseen: u64,
}

impl Losses {
    /// Reads a tracer's `losses` map.
    pub fn read(map: &dyn MapCore) -> Result<Losses> {
        let sum = |k: loss_kind| percpu::values::<u64>(map, k.0).map(|v| v.iter().sum::<u64>());
        let unseen = sum(loss_kind::LOSS_UNSEEN)?;
        Ok(Losses {
            ringbuf: sum(loss_kind::LOSS_RINGBUF)?,
            map_full: sum(loss_kind::LOSS_MAP_FULL)?,
            no_entry: sum(loss_kind::LOSS_NO_ENTRY)?,
            missed: unseen,
            unseen,
        })
    }

    /// These counters with the kernel's skipped runs of `obj`'s loaded programs added.
    pub fn with_missed(mut self, obj: &libbpf_rs::Object) -> Result<Losses> {
        self.missed = self.unseen;
        for fd in crate::core::attach::loaded_programs(obj) {
            self.missed += crate::core::runstats::prog_run_time(fd)?.recursion_misses;
        }
        Ok(self)
    }

    pub fn add(&mut self, o: &Losses) {
        self.ringbuf += o.ringbuf;
        self.map_full += o.map_full;
        self.no_entry += o.no_entry;
        self.missed += o.missed;
        self.unseen += o.unseen;
    }

    pub fn total(&self) -> u64 {
        self.ringbuf + self.map_full + self.no_entry + self.missed
    }

    /// The summary's `"lost"` object: every key, always.
    pub fn to_json(&self) -> Value {
        json!({"ringbuf": self.ringbuf, "map_full": self.map_full, "no_entry": self.no_entry, "missed": self.missed})
    }

    /// The text summary's sentence, e.g. `Lost: 0 events (ring buffer full), 0 records
    /// (store full), 2 exits without a recorded entry (begun before tracing, or dropped).`
    /// Runs the kernel skipped are named only when there were some.
    pub fn text(&self) -> String {
        let mut s = format!(
            "Lost: {} events (ring buffer full), {} records (store full), {} exits without a recorded entry (begun before tracing, or dropped)",
            self.ringbuf, self.map_full, self.no_entry
        );
        let skipped = self.missed.saturating_sub(self.unseen);
        if skipped > 0 {
            s += &format!(
                ", {skipped} program runs the kernel skipped (the program was already running on that CPU)"
            );
        }
        if self.unseen > 0 {
            s += &format!(
                ", {} hook hits the programs were never given (found afterwards)",
                self.unseen
            );
        }
        s + "."
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_schema() {
        let l = Losses {
            ringbuf: 1,
            map_full: 2,
            no_entry: 3,
            missed: 4,
            ..Default::default()
        };
        assert_eq!(
            l.to_json(),
            json!({"ringbuf": 1, "map_full": 2, "no_entry": 3, "missed": 4})
        );
        assert!(l.text().contains("4 program runs the kernel skipped"));
        assert!(l
            .text()
            .starts_with("Lost: 1 events (ring buffer full), 2 records"));
        assert_eq!(l.total(), 10);
    }
}
