// SPDX-License-Identifier: Apache-2.0
//! Pids as btrace's pid namespace sees them. Kernel programs see host ids; a user gives
//! and reads ids of btrace's own namespace. In the initial namespace the two are the
//! same; in another (a container with its own pid namespace) a task iterator
//! (pidns.bpf.c) maps between them.

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::skel::OpenSkel;
use libbpf_rs::Iter;

use crate::core::skel::{Loaded, SkelKind};
use crate::model::abi::types::task_hdr;
use crate::model::task::{Head, HeadRef, NsIds};

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/pidns.skel.rs"));
}
use skel::{types, OpenPidnsSkel, PidnsSkel, PidnsSkelBuilder};

crate::skel_kind!(PidnsKind, PidnsSkelBuilder, OpenPidnsSkel, PidnsSkel);

// SAFETY: a plain C struct of integers, as generated from the object's BTF.
unsafe impl plain::Plain for types::pidns_entry {}

/// The initial pid namespace's inode number (PROC_PID_INIT_INO).
const INIT_PID_NS: u64 = 0xEFFF_FFFC;

/// The inode number of this process's pid namespace.
pub fn own_ns_inum() -> Option<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let s = link.to_str()?;
    s.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// The device and inode of this process's pid namespace when it is not the initial one
/// (what bpf_get_ns_current_pid_tgid() takes), else None.
pub fn own_ns_dev_ino() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    if !in_child_ns() {
        return None;
    }
    let m = std::fs::metadata("/proc/self/ns/pid").ok()?;
    Some((m.dev(), m.ino()))
}

/// Whether btrace runs in a pid namespace other than the initial one (asked once: a
/// process does not change its pid namespace).
pub fn in_child_ns() -> bool {
    static IN_CHILD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN_CHILD.get_or_init(|| own_ns_inum().is_some_and(|i| i != INIT_PID_NS))
}

// A task header decoded: which ids to print depends on btrace's pid namespace, so the
// decoding lives here rather than beside the types (the model imports nothing above it).
impl Head {
    /// When btrace runs in a pid namespace of its own, the header's namespace ids (0:
    /// outside it) are the ones to print.
    pub fn from_hdr(h: &task_hdr) -> Head {
        let r = HeadRef::from_hdr(h);
        Head {
            ts_ns: r.ts_ns,
            pid: r.pid,
            tid: r.tid,
            comm: r.comm.into_owned(),
            ns: r.ns,
            cgroup_id: r.cgroup_id,
        }
    }
}

impl<'a> HeadRef<'a> {
    /// As [`Head::from_hdr`].
    pub fn from_hdr(h: &'a task_hdr) -> HeadRef<'a> {
        let in_ns = in_child_ns();
        let nonzero = |v: u32| (v != 0).then_some(v);
        // SAFETY: c_char and u8 have the same size and alignment, and every bit pattern is
        // valid for both; the slice covers exactly the comm array, borrowed from `h`.
        let chars =
            unsafe { std::slice::from_raw_parts(h.comm.as_ptr() as *const u8, h.comm.len()) };
        let len = chars.iter().position(|&c| c == 0).unwrap_or(chars.len());
        HeadRef {
            ts_ns: h.ts_ns,
            pid: h.pid,
            tid: h.tid,
            comm: String::from_utf8_lossy(&chars[..len]),
            ns: in_ns.then(|| NsIds {
                pid: nonzero(h.ns_pid),
                tid: nonzero(h.ns_tid),
            }),
            cgroup_id: h.cgroup_id,
        }
    }
}

/// One task's ids, host and namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ids {
    pub host_pid: u32,
    pub host_tgid: u32,
    pub ns_pid: u32,
    pub ns_tgid: u32,
}

/// The tasks btrace's namespace sees, by host and by namespace id.
#[derive(Debug, Default)]
pub struct PidView {
    /// None: btrace runs in the initial namespace, where ids are the same.
    inum: Option<u32>,
    by_host: HashMap<u32, Ids>,
    by_ns: HashMap<u32, Ids>,
    refreshed: Option<Instant>,
}

/// How often a miss may trigger a new walk of every task.
const REFRESH_AT_MOST: Duration = Duration::from_millis(100);

impl PidView {
    /// The view of this process's namespace (reads every task once when it is not the
    /// initial namespace).
    pub fn new() -> Result<PidView> {
        let mut v = PidView::default();
        if let Some(inum) = own_ns_inum().filter(|&i| i != INIT_PID_NS) {
            v.inum = Some(inum as u32);
            v.refresh()?;
        }
        Ok(v)
    }

    /// Whether ids need translating at all.
    pub fn translates(&self) -> bool {
        self.inum.is_some()
    }

    fn refresh(&mut self) -> Result<()> {
        let Some(inum) = self.inum else {
            return Ok(());
        };
        let entries = walk(inum)?;
        self.by_host = entries.iter().map(|e| (e.host_pid, *e)).collect();
        self.by_ns = entries.iter().map(|e| (e.ns_pid, *e)).collect();
        self.refreshed = Some(Instant::now());
        Ok(())
    }

    fn refresh_if_stale(&mut self) {
        if self
            .refreshed
            .is_none_or(|t| t.elapsed() >= REFRESH_AT_MOST)
        {
            let _ = self.refresh();
        }
    }

    /// The host id of a task btrace's namespace calls `ns_id`.
    pub fn to_host(&mut self, ns_id: u32) -> Option<u32> {
        self.other_id(ns_id, |v| &v.by_ns, |e| e.host_pid)
    }

    /// The namespace id of the host task `host_id`; None for a task outside the namespace.
    pub fn to_ns(&mut self, host_id: u32) -> Option<u32> {
        self.other_id(host_id, |v| &v.by_host, |e| e.ns_pid)
    }

    /// `id` looked up in the table `by` (the ids re-read first when it is not there and the
    /// last reading is stale), given as the other side's id (`other`); the same id outside a
    /// namespace.
    fn other_id(
        &mut self,
        id: u32,
        by: fn(&PidView) -> &HashMap<u32, Ids>,
        other: fn(&Ids) -> u32,
    ) -> Option<u32> {
        if self.inum.is_none() {
            return Some(id);
        }
        if !by(self).contains_key(&id) {
            self.refresh_if_stale();
        }
        by(self).get(&id).map(other)
    }
}

/// Every task visible in the namespace `inum`, from the kernel's task iterator.
fn walk(inum: u32) -> Result<Vec<Ids>> {
    // Only the open step of core::lifecycle: an iterator over tasks, run once, with no
    // scope (the scope filter itself needs this walk) and one way.
    let it = Loaded::<PidnsKind>::new(|storage| {
        let mut open = PidnsKind::open(storage)?;
        crate::core::rodata::typed(&mut open.maps.rodata_data).target_ns_inum = inum;
        Ok(open.load()?)
    })
    .context("loading the pid namespace iterator (needs Linux 5.8+)")?;
    let link = it
        .progs
        .pidns_tasks
        .attach()
        .context("attaching the pid namespace iterator")?;
    let mut bytes = Vec::new();
    Iter::new(&link)
        .context("starting the pid namespace iterator")?
        .read_to_end(&mut bytes)
        .context("reading the pid namespace iterator")?;
    let size = std::mem::size_of::<types::pidns_entry>();
    Ok(bytes
        .chunks_exact(size)
        .filter_map(|c| plain::from_bytes::<types::pidns_entry>(c).ok())
        .map(|e| Ids {
            host_pid: e.host_pid,
            host_tgid: e.host_tgid,
            ns_pid: e.ns_pid,
            ns_tgid: e.ns_tgid,
        })
        .collect())
}
