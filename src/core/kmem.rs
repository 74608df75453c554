// SPDX-License-Identifier: Apache-2.0
//! The kernel memory a program's maps take, from their sizes as configured, before load:
//! preallocated hashes and arrays take all their entries at once (per-CPU ones once per
//! possible CPU), stack maps their entries times the stack depth, ring buffers their
//! bytes. Above [`WARN_BYTES`] one stderr line says the cost and the flag that drives it;
//! above [`limit_bytes`] the load is refused with the flag and a value that fits, before
//! anything is loaded (a flag such as `--max-inflight 262144` with `--string-size 4096`
//! once took 1.6 GB without a word).

use std::sync::atomic::{AtomicBool, Ordering};

use libbpf_rs::{MapType, OpenObject};

use crate::core::system::{fmt_bytes, hash_store_bytes};

/// A cost worth one line on stderr.
pub const WARN_BYTES: u64 = 64 << 20;
/// The most a run may take: 1 GB, or half the machine's memory if that is less.
pub const LIMIT_BYTES: u64 = 1 << 30;

/// `BPF_F_NO_PREALLOC`: a hash whose elements are allocated as they are inserted.
const NO_PREALLOC: u32 = libbpf_sys::BPF_F_NO_PREALLOC;

/// A map whose size a flag sets: its name in the object, the flag, and whether the flag
/// gives its entries (a store's bound) or its bytes (a ring buffer).
#[derive(Clone, Copy, Debug)]
pub struct Driver {
    pub map: &'static str,
    pub flag: &'static str,
}

impl Driver {
    /// The map `map`, sized by `flag`.
    pub const fn new(map: &'static str, flag: &'static str) -> Driver {
        Driver { map, flag }
    }

    /// Whether this flag sizes map `name`: the map of that name, or one of its numbered
    /// buffers (`stacks` sizes `stacks0` and `stacks1`).
    pub fn drives(&self, name: &str) -> bool {
        name.strip_prefix(self.map)
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
    }
}

/// The ring buffer of the commands that stream events.
pub const RING: Driver = Driver::new("events", "--buffer-size");

/// One map's size as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSize {
    pub name: String,
    pub map_type: MapType,
    pub key: u64,
    pub value: u64,
    pub entries: u64,
    pub flags: u32,
}

impl MapSize {
    /// Bytes of kernel memory the map takes once created (those that allocate as they
    /// fill, such as task storage or non-preallocated hashes, count nothing).
    pub fn bytes(&self, cpus: u64) -> u64 {
        let value = self.value.div_ceil(8) * 8;
        let prealloc = self.flags & NO_PREALLOC == 0;
        match self.map_type {
            MapType::RingBuf | MapType::UserRingBuf => self.entries,
            MapType::Array => self.entries * value,
            MapType::PercpuArray => self.entries * value * cpus,
            MapType::Hash | MapType::LruHash if prealloc => {
                hash_store_bytes(self.entries, self.key, self.value)
            }
            MapType::PercpuHash | MapType::LruPercpuHash if prealloc => {
                hash_store_bytes(self.entries, self.key, 8) + self.entries * value * cpus
            }
            // struct stack_map_bucket: a header of 16 bytes before the frames.
            MapType::StackTrace => self.entries * (16 + value),
            _ => 0,
        }
    }
}

/// The sizes of the maps an open object will create.
pub fn sizes(obj: &OpenObject) -> Vec<MapSize> {
    obj.maps()
        .filter(|m| m.autocreate())
        .map(|m| MapSize {
            name: m.name().to_string_lossy().into_owned(),
            map_type: m.map_type(),
            key: m.key_size().into(),
            value: m.value_size().into(),
            entries: m.max_entries().into(),
            flags: m.map_flags(),
        })
        .collect()
}

/// The most a run may take here: [`LIMIT_BYTES`], or half of MemTotal if less.
pub fn limit_bytes() -> u64 {
    let mem_total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    });
    mem_total.map_or(LIMIT_BYTES, |kb| LIMIT_BYTES.min(kb * 1024 / 2))
}

/// What a configuration costs and what to say about it.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Quiet,
    /// The line to print on stderr.
    Warn(String),
    /// The refusal.
    Refuse(String),
}

/// Judges the maps' total against `warn` and `limit`, naming the flag whose map costs
/// most (of `drivers`) and, when refused, a value of it that fits.
pub fn judge(maps: &[MapSize], drivers: &[Driver], cpus: u64, warn: u64, limit: u64) -> Verdict {
    let total: u64 = maps.iter().map(|m| m.bytes(cpus)).sum();
    if total < warn {
        return Verdict::Quiet;
    }
    // The costliest flag: its maps' bytes together (a double-buffered table is two maps
    // of one flag), the entries of one of them (each has what the flag gives).
    let driven = drivers
        .iter()
        .filter_map(|d| {
            let mine: Vec<&MapSize> = maps.iter().filter(|m| d.drives(&m.name)).collect();
            let first = *mine.first()?;
            let bytes: u64 = mine.iter().map(|m| m.bytes(cpus)).sum();
            Some((first, d, bytes))
        })
        .max_by_key(|&(_, _, bytes)| bytes);
    let what = match driven {
        Some((m, d, bytes)) => {
            let size = if m.map_type == MapType::RingBuf {
                fmt_bytes(m.entries)
            } else {
                format!(
                    "{} entries of {} bytes",
                    m.entries,
                    m.bytes(cpus) / m.entries.max(1)
                )
            };
            let maps_named = if bytes > m.bytes(cpus) {
                format!("maps {}*", d.map)
            } else {
                format!("map {}", m.name)
            };
            format!(
                "{} for {} {} ({maps_named}: {size})",
                fmt_bytes(bytes),
                d.flag,
                flag_value(m, m.entries),
            )
        }
        None => "in maps no flag sizes".to_string(),
    };
    if total <= limit {
        return Verdict::Warn(format!(
            "this run takes about {} of kernel memory, {what}",
            fmt_bytes(total)
        ));
    }
    let fix = match driven {
        Some((m, d, bytes)) => {
            let others = total - bytes;
            // What the map may take with the rest unchanged, as a power of two of its
            // entries (ring buffers are powers of two of pages anyway).
            let room = limit.saturating_sub(others);
            let fits = (m.entries as u128 * room as u128 / bytes.max(1) as u128) as u64;
            if fits >= 1 {
                let v = 1u64 << (63 - fits.leading_zeros());
                format!("give {} {} or less", d.flag, flag_value(m, v))
            } else {
                format!("lower {}", d.flag)
            }
        }
        None => "lower the sizes given".to_string(),
    };
    Verdict::Refuse(format!(
        "this run would take about {} of kernel memory, above the limit of {} (1 GB, or half of the memory if less): {what}; {fix}",
        fmt_bytes(total),
        fmt_bytes(limit)
    ))
}

/// A size as its flag takes it: entries, or a ring buffer's bytes in M where whole.
fn flag_value(m: &MapSize, v: u64) -> String {
    match m.map_type {
        MapType::RingBuf if v >= 1 << 20 && v.is_multiple_of(1 << 20) => format!("{}M", v >> 20),
        _ => v.to_string(),
    }
}

/// Checks an open object before load: refused above the limit (the error names the flag),
/// one line on stderr above [`WARN_BYTES`] (once per run, however many loads try).
pub fn check(obj: &OpenObject, drivers: &[Driver]) -> anyhow::Result<()> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let cpus = libbpf_rs::num_possible_cpus().unwrap_or(1) as u64;
    match judge(&sizes(obj), drivers, cpus, WARN_BYTES, limit_bytes()) {
        Verdict::Quiet => Ok(()),
        Verdict::Warn(line) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!("btrace: {line}");
            }
            Ok(())
        }
        Verdict::Refuse(why) => Err(TooBig(why).into()),
    }
}

/// A load refused for its kernel memory; callers pass it on as it is (it names the flag).
#[derive(Debug)]
pub struct TooBig(pub String);

impl std::fmt::Display for TooBig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TooBig {}

/// The refusal in `e`'s chain, if the load was refused for its kernel memory.
pub fn too_big(e: &anyhow::Error) -> Option<&TooBig> {
    e.chain().find_map(|c| c.downcast_ref::<TooBig>())
}

/// `e` as it is when it is a [`TooBig`] refusal (whose line names the flag, and must not
/// be dressed as the kernel's failure to load), else `wrap(e)`.
pub fn unless_too_big(
    e: anyhow::Error,
    wrap: impl FnOnce(anyhow::Error) -> anyhow::Error,
) -> anyhow::Error {
    match too_big(&e) {
        Some(_) => e,
        None => wrap(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(name: &str, map_type: MapType, key: u64, value: u64, entries: u64) -> MapSize {
        MapSize {
            name: name.into(),
            map_type,
            key,
            value,
            entries,
            flags: 0,
        }
    }

    const DRIVERS: &[Driver] = &[RING, Driver::new("inflight", "--max-inflight")];

    #[test]
    fn sizes_by_map_type() {
        assert_eq!(map("r", MapType::RingBuf, 0, 0, 4 << 20).bytes(4), 4 << 20);
        assert_eq!(
            map("a", MapType::PercpuArray, 4, 100, 2).bytes(4),
            2 * 104 * 4
        );
        assert_eq!(
            map("s", MapType::StackTrace, 4, 1016, 10).bytes(4),
            10 * 1032
        );
        assert_eq!(
            map("h", MapType::Hash, 4, 8, 10).bytes(1),
            10 * (48 + 8 + 8)
        );
        let mut lazy = map("h", MapType::Hash, 4, 8, 10);
        lazy.flags = NO_PREALLOC;
        assert_eq!(lazy.bytes(1), 0);
        assert_eq!(map("t", MapType::TaskStorage, 4, 8, 0).bytes(1), 0);
    }

    #[test]
    fn quiet_warned_refused() {
        let small = [map("events", MapType::RingBuf, 0, 0, 4 << 20)];
        assert_eq!(judge(&small, DRIVERS, 2, 64 << 20, 1 << 30), Verdict::Quiet);
        let big = [
            map("events", MapType::RingBuf, 0, 0, 4 << 20),
            map("inflight", MapType::Hash, 4, 6000, 32768),
        ];
        let Verdict::Warn(w) = judge(&big, DRIVERS, 2, 64 << 20, 1 << 30) else {
            panic!()
        };
        assert!(w.contains("--max-inflight 32768 (map inflight"), "{w}");
        let huge = [
            map("events", MapType::RingBuf, 0, 0, 4 << 20),
            map("inflight", MapType::Hash, 4, 6000, 262144),
        ];
        let Verdict::Refuse(r) = judge(&huge, DRIVERS, 2, 64 << 20, 1 << 30) else {
            panic!()
        };
        assert!(r.contains("above the limit of 1024 MB"), "{r}");
        // The limit less the ring: 1020 MB / 6056 bytes = 176610 -> 131072.
        assert!(r.ends_with("give --max-inflight 131072 or less"), "{r}");
    }
}
