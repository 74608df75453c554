// SPDX-License-Identifier: Apache-2.0
//! The user side of the profilers' double-buffered tables (src/bpf/include/
//! stack_tables.h): while the programs write one buffer, the other is drained (every
//! entry read and deleted, in batches where the kernel has them) into aggregates here, so
//! that a run of any length keeps every sample as long as a buffer holds what arrives
//! between two drains (once a second, sooner when a table passes half full).

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};

use crate::core::percpu;
use crate::model::abi::types::{stack_key, stack_table_counter};

/// The flag that sizes the stack tables (both buffers), for the kernel-memory check.
pub const STACKS_DRIVER: crate::core::kmem::Driver =
    crate::core::kmem::Driver::new("stacks", "--max-stacks");

/// The [`TableMaps`] of a loaded profiler skeleton (sized by core::lifecycle from
/// `Declaration::stack_tables`).
#[macro_export]
macro_rules! stack_table_maps {
    ($skel:expr) => {
        $crate::core::stack_tables::TableMaps {
            ctl: &$skel.maps.table_ctl,
            counters: &$skel.maps.table_counters,
            counts: [&$skel.maps.counts0, &$skel.maps.counts1],
            stacks: [&$skel.maps.stacks0, &$skel.maps.stacks1],
        }
    };
}

/// The maps of one profiler's tables, borrowed from its skeleton.
pub struct TableMaps<'a> {
    /// `table_ctl`: index 0 holds the buffer the programs write.
    pub ctl: &'a dyn MapCore,
    /// `table_counters` (per CPU, enum stack_table_counter).
    pub counters: &'a dyn MapCore,
    pub counts: [&'a dyn MapCore; 2],
    pub stacks: [&'a dyn MapCore; 2],
}

/// What the programs saw in all, kept or lost (TABLE_SEEN, TABLE_SEEN_VALUE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Samples (profile) or blocks (offcpu).
    pub count: u64,
    /// Samples (profile) or nanoseconds (offcpu).
    pub value: u64,
}

/// Drains a buffer at least this often.
pub const DRAIN_EVERY: Duration = Duration::from_secs(1);
/// A buffer is drained only after it has been inactive this long: a program reads the
/// active index once at its start and runs for microseconds, so none can still be
/// writing the buffer then.
const QUIET: Duration = Duration::from_millis(50);
/// How often the fill of the active buffer is read (one syscall).
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// The aggregates drained so far, and the state of the flipping.
pub struct StackTables {
    active: u32,
    flipped: Instant,
    checked: Instant,
    max_counts: u64,
    max_stacks: u64,
    /// Entries made in each buffer (counts, stacks) as of its last drain: the counters
    /// are cumulative, so a buffer's fill is the difference.
    made_at_drain: [(u64, u64); 2],
    /// Count entries by their key's bytes: (value, count) summed over the drains.
    counts: HashMap<Vec<u8>, (u64, u64)>,
    /// Every stack drained, by id (its content hash): addresses, innermost first.
    stacks: HashMap<i64, Vec<u64>>,
    /// A count entry's value bytes as (value, count).
    value: fn(&[u8]) -> (u64, u64),
    /// Whether BPF_MAP_LOOKUP_AND_DELETE_BATCH works here (None: not tried yet).
    batch: Option<bool>,
    /// Drains so far, and how many of them came early (a table past half full).
    pub drains: u64,
    pub early_drains: u64,
}

impl StackTables {
    /// `max_counts`, `max_stacks`: each buffer's bounds; `value`: how to read a count
    /// entry's value.
    pub fn new(max_counts: u32, max_stacks: u32, value: fn(&[u8]) -> (u64, u64)) -> Self {
        let now = Instant::now();
        // Testing builds: the key-by-key drain of kernels without batch operations, on
        // any kernel (tests/profile.rs).
        #[cfg(feature = "testing")]
        let batch = std::env::var_os("BTRACE_TEST_NO_BATCH")
            .is_some()
            .then_some(false);
        #[cfg(not(feature = "testing"))]
        let batch = None;
        StackTables {
            active: 0,
            flipped: now,
            checked: now,
            max_counts: max_counts.into(),
            max_stacks: max_stacks.into(),
            made_at_drain: [(0, 0); 2],
            counts: HashMap::new(),
            stacks: HashMap::new(),
            value,
            batch,
            drains: 0,
            early_drains: 0,
        }
    }

    /// Called while the run goes on (each poll): drains the inactive buffer and flips
    /// when one is due.
    pub fn poll(&mut self, m: &TableMaps) -> Result<()> {
        let now = Instant::now();
        let since = now.duration_since(self.flipped);
        if since < QUIET {
            return Ok(());
        }
        let mut due = since >= DRAIN_EVERY;
        if !due && now.duration_since(self.checked) >= CHECK_EVERY {
            self.checked = now;
            if self.half_full(m)? {
                due = true;
                self.early_drains += 1;
            }
        }
        if due {
            self.drain(m, 1 - self.active)?;
            self.flip(m)?;
        }
        Ok(())
    }

    /// Called once the programs are detached: drains both buffers (after a pause for any
    /// program still running).
    pub fn finish(&mut self, m: &TableMaps) -> Result<()> {
        std::thread::sleep(Duration::from_millis(10));
        self.drain(m, 1 - self.active)?;
        self.drain(m, self.active)
    }

    fn made(m: &TableMaps, buf: u32) -> Result<(u64, u64)> {
        let sum = |c: stack_table_counter| -> Result<u64> {
            Ok(percpu::values::<u64>(m.counters, c.0)?.iter().sum())
        };
        Ok(if buf == 0 {
            (
                sum(stack_table_counter::TABLE_COUNTS_MADE0)?,
                sum(stack_table_counter::TABLE_STACKS_MADE0)?,
            )
        } else {
            (
                sum(stack_table_counter::TABLE_COUNTS_MADE1)?,
                sum(stack_table_counter::TABLE_STACKS_MADE1)?,
            )
        })
    }

    fn half_full(&self, m: &TableMaps) -> Result<bool> {
        let (counts, stacks) = Self::made(m, self.active)?;
        let (c0, s0) = self.made_at_drain[self.active as usize];
        Ok(2 * counts.saturating_sub(c0) > self.max_counts
            || 2 * stacks.saturating_sub(s0) > self.max_stacks)
    }

    fn flip(&mut self, m: &TableMaps) -> Result<()> {
        self.active = 1 - self.active;
        m.ctl
            .update(
                &0u32.to_ne_bytes(),
                &self.active.to_ne_bytes(),
                MapFlags::ANY,
            )
            .context("flipping the profiler's tables")?;
        self.flipped = Instant::now();
        Ok(())
    }

    fn drain(&mut self, m: &TableMaps, buf: u32) -> Result<()> {
        let made = Self::made(m, buf)?;
        let stacks = &mut self.stacks;
        drain_map(m.stacks[buf as usize], &mut self.batch, |k, v| {
            let id = i64::from_ne_bytes(k[..8].try_into().expect("an 8-byte key"));
            stacks.entry(id).or_insert_with(|| {
                v.chunks_exact(8)
                    .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
                    .take_while(|&a| a != 0)
                    .collect()
            });
        })?;
        let counts = &mut self.counts;
        let value = self.value;
        drain_map(m.counts[buf as usize], &mut self.batch, |k, v| {
            let (val, n) = value(v);
            let e = counts.entry(k.to_vec()).or_default();
            e.0 += val;
            e.1 += n;
        })?;
        self.made_at_drain[buf as usize] = made;
        self.drains += 1;
        Ok(())
    }

    /// Every count drained: (key, value, count).
    pub fn entries(&self) -> Vec<(stack_key, u64, u64)> {
        let ksize = std::mem::size_of::<stack_key>();
        self.counts
            .iter()
            .filter_map(|(k, &(v, n))| {
                let key: stack_key = crate::core::skel::plain_prefix(k.get(..ksize)?);
                Some((key, v, n))
            })
            .collect()
    }

    /// Every stack drained, by id.
    pub fn stacks(&self) -> &HashMap<i64, Vec<u64>> {
        &self.stacks
    }

    /// What the programs saw in all (kept or lost).
    pub fn seen(m: &TableMaps) -> Result<Seen> {
        let sum = |c: stack_table_counter| -> Result<u64> {
            Ok(percpu::values::<u64>(m.counters, c.0)?.iter().sum())
        };
        Ok(Seen {
            count: sum(stack_table_counter::TABLE_SEEN)?,
            value: sum(stack_table_counter::TABLE_SEEN_VALUE)?,
        })
    }
}

/// Reads and deletes every entry of a hash map, giving each (key, value) to `each`:
/// BPF_MAP_LOOKUP_AND_DELETE_BATCH (5.6+) where it works (`batch` remembers), else key
/// by key.
fn drain_map(
    map: &dyn MapCore,
    batch: &mut Option<bool>,
    mut each: impl FnMut(&[u8], &[u8]),
) -> Result<()> {
    if *batch != Some(false) {
        match drain_batch(map, &mut each) {
            Ok(()) => {
                *batch = Some(true);
                return Ok(());
            }
            Err(e) if batch.is_none() && unsupported(e) => *batch = Some(false),
            Err(e) => {
                return Err(std::io::Error::from_raw_os_error(e))
                    .with_context(|| format!("draining map {}", map.name().to_string_lossy()))
            }
        }
    }
    // One by one: the keys first (deleting while walking them would skip some).
    let keys: Vec<Vec<u8>> = map.keys().collect();
    for k in keys {
        if let Some(v) = map
            .lookup(&k, MapFlags::ANY)
            .with_context(|| format!("reading map {}", map.name().to_string_lossy()))?
        {
            each(&k, &v);
        }
        // Absent meanwhile: nothing to delete.
        let _ = map.delete(&k);
    }
    Ok(())
}

/// Errors that say the kernel has no batch operations for this map.
fn unsupported(errno: i32) -> bool {
    matches!(
        errno,
        libc::EINVAL | libc::EOPNOTSUPP | crate::model::errno::ENOTSUPP
    )
}

/// The batch drain; Err(errno) when the kernel refused it before anything was read.
fn drain_batch(map: &dyn MapCore, each: &mut impl FnMut(&[u8], &[u8])) -> Result<(), i32> {
    let ksize = map.key_size() as usize;
    let vsize = map.value_size() as usize;
    let mut cap: usize = 256;
    let mut keys = vec![0u8; cap * ksize];
    let mut vals = vec![0u8; cap * vsize];
    // The position in the map: a bucket index for hash maps (u32); room for more.
    let mut pos_in = [0u64; 1];
    let mut pos_out = [0u64; 1];
    let mut first = true;
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    loop {
        let mut count = cap as u32;
        // SAFETY: keys and vals hold `count` keys and values of this map; the positions
        // are 8 bytes, more than a hash map's 4-byte bucket index.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_and_delete_batch(
                map.as_fd().as_raw_fd(),
                if first {
                    std::ptr::null_mut()
                } else {
                    pos_in.as_mut_ptr().cast()
                },
                pos_out.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                vals.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let err = if ret < 0 { -ret } else { 0 };
        if err == libc::ENOSPC && count == 0 {
            // One bucket holds more entries than fit: room for more, same position.
            cap *= 2;
            keys.resize(cap * ksize, 0);
            vals.resize(cap * vsize, 0);
            continue;
        }
        let n = (count as usize).min(cap);
        for i in 0..n {
            each(
                &keys[i * ksize..(i + 1) * ksize],
                &vals[i * vsize..(i + 1) * vsize],
            );
        }
        if err != 0 {
            // ENOENT: the end of the map. Another error: what was read is kept (and
            // deleted); the caller says what failed.
            return if err == libc::ENOENT {
                Ok(())
            } else {
                Err(err)
            };
        }
        pos_in = pos_out;
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_errors() {
        assert!(unsupported(libc::EINVAL));
        assert!(unsupported(524));
        assert!(!unsupported(libc::EPERM));
    }
}
