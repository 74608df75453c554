//! Reading per-CPU maps: one value per possible CPU, summed in user space.

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};

/// Every CPU's copy of the value at `key` (empty when the key is absent).
pub fn values<T: plain::Plain + Copy>(map: &dyn MapCore, key: u32) -> Result<Vec<T>> {
    let raw = map
        .lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY)
        .with_context(|| format!("reading per-CPU map {}", map.name().to_string_lossy()))?;
    Ok(raw
        .unwrap_or_default()
        .iter()
        .filter_map(|bytes| plain::from_bytes::<T>(bytes).ok().copied())
        .collect())
}

/// Loss counters kept by a tracer in its per-CPU `losses` array (LOSS_* in btrace.h).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    pub map_full: u64,
    pub no_entry: u64,
    pub ringbuf: u64,
}

pub const LOSS_MAP_FULL: u32 = 0;
pub const LOSS_NO_ENTRY: u32 = 1;
pub const LOSS_RINGBUF: u32 = 2;

impl Losses {
    pub fn read(map: &dyn MapCore) -> Result<Losses> {
        let sum = |k| values::<u64>(map, k).map(|v| v.iter().sum::<u64>());
        Ok(Losses {
            map_full: sum(LOSS_MAP_FULL)?,
            no_entry: sum(LOSS_NO_ENTRY)?,
            ringbuf: sum(LOSS_RINGBUF)?,
        })
    }
}
