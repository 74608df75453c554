// SPDX-License-Identifier: Apache-2.0
//! The block I/O latency tracer: block_rq_insert/issue/complete through tp_btf or raw_tp,
//! histograms per (disk, operation) kept in the kernel.

use std::collections::HashMap;
use std::fmt;

use anyhow::Result;
use libbpf_rs::skel::Skel;
use libbpf_rs::{MapCore, MapFlags};

use crate::core::attach::Links;
use crate::core::kmem::Driver;
use crate::core::lifecycle::{self, Declaration};
use crate::core::losses::Losses;
use crate::core::percpu;
use crate::core::rodata;
use crate::core::scope::Scope;
use crate::model::delta::Cumulative;
use crate::model::histogram::Log2Hist;
use crate::model::task::comm_text;

use super::skel::{types, BioKind, BioObj, OpenBiolatencySkel, MAX_INFLIGHT};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Hook {
    #[value(name = "tp_btf")]
    TpBtf,
    #[value(name = "raw_tp")]
    RawTp,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::TpBtf => "tp_btf",
            Hook::RawTp => "raw_tp",
        })
    }
}

pub const HOOKS: [Hook; 2] = [Hook::TpBtf, Hook::RawTp];

#[derive(Debug, Default)]
pub struct Config {
    pub scope: Scope,
    /// A histogram per disk too.
    pub per_disk: bool,
    /// Queue time from insert (-Q): block_rq_insert is attached.
    pub queued: bool,
    /// Bound of the requests in flight at once.
    pub max_inflight: Option<u32>,
}

/// `--max-inflight N`, bounded.
pub fn parse_max_inflight(s: &str) -> std::result::Result<u32, String> {
    crate::core::system::parse_store_size(
        s,
        1 << 22,
        "more requests in flight than any machine's queues hold",
        8,
        std::mem::size_of::<types::bio_start>() as u64,
    )
}

/// Whether block_rq_insert/issue take the request_queue first (5.10) or only the request
/// (5.11 and later), from the kernel's BTF prototype of block_rq_issue.
fn rq_after_queue() -> Result<bool> {
    let btf = crate::resolve::btf::vmlinux()?;
    Ok(crate::resolve::btf::tracepoint_args(&btf, "block_rq_issue") == Some(2))
}

/// The block I/O tracer as core::lifecycle drives it: the config is the declaration.
impl Declaration for Config {
    type Kind = BioKind;
    type Way = Hook;
    const DRIVERS: &'static [Driver] = &[Driver::new("bio_starts", "--max-inflight")];

    fn scope(&self) -> &Scope {
        &self.scope
    }

    fn configure(&self, hook: Hook, open: &mut OpenBiolatencySkel<'_>) -> Result<()> {
        let with_q = rq_after_queue()?;
        {
            let ro = rodata::typed(&mut open.maps.rodata_data);
            ro.per_disk = self.per_disk;
            ro.scoped = self.scope.is_on();
        }
        open.maps
            .bio_starts
            .set_max_entries(self.max_inflight.unwrap_or(MAX_INFLIGHT))?;
        let btf = hook == Hook::TpBtf;
        let insert = self.queued || self.scope.is_on();
        let p = &mut open.progs;
        p.bio_insert_btf.set_autoload(btf && insert && !with_q);
        p.bio_insert_btf_q.set_autoload(btf && insert && with_q);
        p.bio_issue_btf.set_autoload(btf && !with_q);
        p.bio_issue_btf_q.set_autoload(btf && with_q);
        p.bio_complete_btf.set_autoload(btf);
        p.bio_insert_raw.set_autoload(!btf && insert && !with_q);
        p.bio_insert_raw_q.set_autoload(!btf && insert && with_q);
        p.bio_issue_raw.set_autoload(!btf && !with_q);
        p.bio_issue_raw_q.set_autoload(!btf && with_q);
        p.bio_complete_raw.set_autoload(!btf);
        Ok(())
    }
}

/// Opens, configures, loads and attaches one way.
pub fn load(hook: Hook, cfg: &Config) -> Result<(BioObj, Links)> {
    lifecycle::load_way(cfg, hook)
}

/// Loads and attaches the first of `hooks` this kernel accepts.
pub fn load_first(hooks: &[Hook], cfg: &Config) -> Result<(Hook, BioObj, Links)> {
    lifecycle::load_first(cfg, hooks)
}

/// One key's figures, CPUs summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BioStat {
    pub lat: Log2Hist,
    pub queue: Log2Hist,
    pub size: Log2Hist,
    pub errors: u64,
}

/// This skeleton's struct hist as a histogram.
fn hist(h: &types::hist) -> Log2Hist {
    Log2Hist {
        count: h.count,
        sum_ns: h.sum_ns,
        buckets: h.buckets,
    }
}

impl BioStat {
    fn add(&mut self, o: &types::bio_stat) {
        self.lat.add(&hist(&o.lat));
        self.queue.add(&hist(&o.queue));
        self.size.add(&hist(&o.size));
        self.errors += o.errors;
    }
}

impl Cumulative for BioStat {
    fn since(&self, e: &Self) -> Option<Self> {
        (self.lat.count >= e.lat.count).then(|| BioStat {
            lat: self.lat.since(&e.lat),
            queue: self.queue.since(&e.queue),
            size: self.size.since(&e.size),
            errors: self.errors.wrapping_sub(e.errors),
        })
    }
}

/// A histogram's key: the disk (None without --per-disk, or for the overflow) and the
/// operation number; `other` marks the overflow of keys beyond the table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub dev: Option<(u32, u32)>,
    pub op: Option<u32>,
}

fn stat_of(cpus: &[types::bio_stat]) -> BioStat {
    let mut s = BioStat::default();
    for c in cpus {
        s.add(c);
    }
    s
}

/// Every key's cumulative figures, and the overflow (key with neither disk nor op).
pub fn read(obj: &BioObj) -> Result<Vec<(Key, BioStat)>> {
    let map = &obj.maps.bio_stats;
    let mut out = Vec::new();
    for k in map.keys() {
        let Ok(key) = plain::from_bytes::<types::bio_key>(&k).copied() else {
            continue;
        };
        let Some(vals) = map.lookup_percpu(&k, MapFlags::ANY)? else {
            continue;
        };
        let cpus: Vec<types::bio_stat> = vals
            .iter()
            .map(|v| crate::core::skel::plain_prefix(v))
            .collect();
        let dev = (key.dev != 0).then_some((key.dev >> 20, key.dev & 0xfffff));
        out.push((
            Key {
                dev,
                op: Some(key.op),
            },
            stat_of(&cpus),
        ));
    }
    let other = stat_of(&percpu::values::<types::bio_stat>(&obj.maps.bio_other, 0)?);
    if other.lat.count > 0 {
        out.push((
            Key {
                dev: None,
                op: None,
            },
            other,
        ));
    }
    Ok(out)
}

/// Disk names by (major, minor): from the kernel's table (taken when the disk was first
/// seen), else sysfs.
pub fn disk_names(obj: &BioObj) -> HashMap<(u32, u32), String> {
    let mut names = HashMap::new();
    for k in obj.maps.bio_disks.keys() {
        let Ok(raw) = <[u8; 4]>::try_from(k.as_slice()) else {
            continue;
        };
        let dev = u32::from_ne_bytes(raw);
        if let Ok(Some(v)) = obj.maps.bio_disks.lookup(&k, MapFlags::ANY) {
            let d: types::bio_disk = crate::core::skel::plain_prefix(&v);
            names.insert((dev >> 20, dev & 0xfffff), comm_text(&d.name));
        }
    }
    names
}

/// A disk's name from sysfs (`/sys/dev/block/MAJ:MIN/uevent`'s DEVNAME).
pub fn sysfs_disk_name(major: u32, minor: u32) -> Option<String> {
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent")).ok()?;
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(str::to_string)
}

/// Operation names from the kernel's BTF (`enum req_op`, `enum req_opf` before 5.19):
/// `REQ_OP_WRITE` -> `write`.
pub fn op_names() -> HashMap<u32, String> {
    use crate::resolve::ctype::KernelTypes;
    let mut m = HashMap::new();
    if let Ok(types) = crate::resolve::btf::BtfTypes::vmlinux() {
        for e in ["enum req_op", "enum req_opf"] {
            if let Some(names) = types.enum_names(e) {
                for (v, n) in names {
                    if let Some(short) = n.strip_prefix("REQ_OP_") {
                        m.entry(v as u32)
                            .or_insert_with(|| short.to_ascii_lowercase());
                    }
                }
            }
        }
    }
    m
}

/// What was not recorded, the kernel's skipped program runs included (`missed`: a
/// completion in an interrupt that came while another completion was being counted in
/// task context on that CPU; those requests are not in the figures).
pub fn losses(obj: &BioObj) -> Result<Losses> {
    Losses::read(&obj.maps.losses)?.with_missed(obj.object())
}

/// Whether the tracer works here, by loading and attaching it for real (btrace doctor).
pub fn check() -> Result<String> {
    let cfg = Config {
        max_inflight: Some(64),
        ..Default::default()
    };
    let (hook, ..) = load_first(&HOOKS, &cfg)?;
    Ok(format!("via {hook}"))
}
