// SPDX-License-Identifier: Apache-2.0
//! The scope filter's kernel side: what is written into a tracer's object before load
//! (rodata, the process bitmap's size, the tree programs), the maps filled after load
//! (cgroups, the process tree), the run-time part of the dashboard, and what a run
//! follows while it goes on (the process tree, cgroups made again). The programs, maps
//! and variables are found by their names in the object: every tracer includes scope.h.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object, OpenObject};

use super::{cgroup_id, descendants, LiveCgroup, Scope, MAX_CGROUPS};
use crate::core::pidns::PidView;

/// The cgroup array's slot of the dashboard's cgroup filter.
const LIVE_CGROUP_SLOT: u32 = crate::model::abi::types::scope_limits::SCOPE_LIVE_CGROUP_SLOT.0;

impl Scope {
    /// Writes the scope into an open object (before load): scope.h's rodata, the process
    /// bitmap's size, and which tree-keeping programs load (`raw`: on raw_tp, else on
    /// classic tracepoints).
    pub fn configure(&self, open: &mut OpenObject, raw: bool) -> Result<()> {
        let (dev, ino) = crate::core::pidns::own_ns_dev_ino().unwrap_or((0, 0));
        let comm = self.comm.unwrap_or_default();
        crate::core::rodata::write(
            open,
            &[
                ("scope_tgid", &self.tgid.to_ne_bytes()),
                ("scope_tree", &[u8::from(self.tree.is_some())]),
                ("scope_tid", &self.tid.to_ne_bytes()),
                ("scope_ncgroups", &(self.cgroups.len() as u32).to_ne_bytes()),
                ("scope_by_comm", &[u8::from(self.comm.is_some())]),
                ("scope_comm", &comm),
                ("scope_ns_dev", &dev.to_ne_bytes()),
                ("scope_ns_ino", &ino.to_ne_bytes()),
            ],
        )?;
        let words = self.tree_words();
        let mut sized = false;
        for mut m in open.maps_mut() {
            if m.name() == "scope_procs" {
                m.set_max_entries(words)?;
                sized = true;
            }
        }
        if !sized {
            bail!("the object has no scope_procs map: its program does not include scope.h");
        }
        let tree = self.tree.is_some() || self.live_tree;
        for mut p in open.progs_mut() {
            let load = match p.name().to_str() {
                Some("scope_fork_raw" | "scope_exit_raw") => tree && raw,
                Some("scope_fork_tp" | "scope_exit_tp") => tree && !raw,
                _ => continue,
            };
            p.set_autoload(load);
        }
        Ok(())
    }

    /// [`Scope::install`] into the scope maps of a loaded object.
    pub fn install_in(&self, obj: &Object) -> Result<()> {
        self.install(&map(obj, "scope_cgroups")?, &map(obj, "scope_cgroup_ids")?)
    }

    /// [`Scope::seed`] into the process tree of a loaded, attached object.
    pub fn seed_in(&self, obj: &Object) -> Result<()> {
        self.seed(&map(obj, "scope_procs")?)
    }

    /// Fills a loaded tracer's scope maps: the cgroup array and the cgroups' ids now,
    /// before anything is attached; the process tree is seeded by [`Scope::seed`] once
    /// attached. The cgroups named by path are then followed: one made again at the same
    /// path replaces the old one in these maps ([`follow_cgroups`]).
    pub fn install(&self, cgroups: &dyn MapCore, ids: &dyn MapCore) -> Result<()> {
        if self.cgroups.is_empty() {
            return Ok(());
        }
        for (i, c) in self.cgroups.iter().enumerate() {
            let fd = c.dir.as_raw_fd() as u32;
            cgroups
                .update(&(i as u32).to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
                .with_context(|| format!("adding cgroup {} to the filter", c.path.display()))?;
        }
        ids.update(
            &0u32.to_ne_bytes(),
            &id_set(&self.cgroup_ids()),
            MapFlags::ANY,
        )
        .context("writing the cgroup filter's ids")?;
        let handle = |m: &dyn MapCore| -> Result<MapHandle> {
            Ok(MapHandle::from_map_id(m.info()?.info.id)?)
        };
        let filter = (handle(cgroups)?, handle(ids)?);
        let mut watch = CGROUP_WATCH.lock().unwrap_or_else(|e| e.into_inner());
        let watch = watch.get_or_insert_with(|| CgroupWatch {
            slots: self
                .cgroups
                .iter()
                .map(|c| WatchedCgroup {
                    path: c.path.clone(),
                    id: c.id,
                    by_path: c.by_path,
                    gone: false,
                })
                .collect(),
            filters: Vec::new(),
            checked: Instant::now(),
        });
        watch.filters.push(filter);
        Ok(())
    }

    /// Seeds the process tree of an attached tracer: the root, then the descendants it
    /// has now. Runs after attaching, so a process forked meanwhile is caught either by
    /// the kernel (its parent was already in) or by the walk of /proc that follows.
    /// The tree becomes the one the run follows to its end: once the root has exited, the
    /// run goes on while a process of the tree still runs ([`followed_tree_running`]).
    pub fn seed(&self, procs: &dyn MapCore) -> Result<()> {
        if self.tree.is_none() || self.tree_ns.is_none() {
            return Ok(());
        }
        self.seed_bits(procs)?;
        let followed = FollowedTree {
            bitmap: Bitmap::map(procs)?,
            pids: PidView::new()?,
        };
        *FOLLOWED.lock().unwrap_or_else(|e| e.into_inner()) = Some(followed);
        Ok(())
    }

    fn seed_bits(&self, procs: &dyn MapCore) -> Result<()> {
        let (Some(root), Some(ns_root)) = (self.tree, self.tree_ns) else {
            return Ok(());
        };
        let mut pids = self.pids.borrow_mut();
        if !pids.translates() {
            return seed_tree(procs, root, false);
        }
        // /proc numbers the descendants in btrace's namespace: each is translated.
        let bitmap = Bitmap::map(procs)?;
        bitmap.set(root);
        for _ in 0..2 {
            for pid in descendants(ns_root) {
                if let Some(h) = pids.to_host(pid) {
                    bitmap.set(h);
                }
            }
        }
        Ok(())
    }
}

/// The process tree a run follows (-p/-c without --no-children): the kernel programs set
/// a process's bit when it is forked by one in the tree and clear it when its last thread
/// exits, so the bits set are the tree's processes not yet ended.
struct FollowedTree {
    bitmap: Bitmap,
    pids: PidView,
}

/// The run's followed tree, registered by the tracer that seeded it (the last one when a
/// run loads several: they all hold the same tree), asked by the run loop.
static FOLLOWED: std::sync::Mutex<Option<FollowedTree>> = std::sync::Mutex::new(None);

/// Forgets the followed tree of an earlier run (a new run starts).
pub fn forget_followed_tree() {
    *FOLLOWED.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// How many processes of the followed tree still run (None: no tree is followed). A bit
/// can outlast its process when the process ended while user space seeded it (a -p
/// descendant exiting during the walk of /proc): a process that /proc no longer shows,
/// or shows as a zombie with no thread left, has ended whatever its bit says.
pub fn followed_tree_running() -> Option<usize> {
    let mut guard = FOLLOWED.lock().unwrap_or_else(|e| e.into_inner());
    let tree = guard.as_mut()?;
    let running = tree
        .bitmap
        .set_bits()
        .filter(|&host| tree.pids.to_ns(host).is_some_and(process_runs))
        .count();
    Some(running)
}

/// Whether the process `pid` (btrace's namespace) has not ended: /proc shows it, and not
/// as a zombie whose threads have all gone (a leader that exited before its other threads
/// shows as a zombie while they run).
fn process_runs(pid: u32) -> bool {
    match crate::core::target::task_info(pid) {
        None => false,
        Some(t) if t.zombie => std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count() > 1)
            .unwrap_or(false),
        Some(_) => true,
    }
}

/// The value of the scope_cgroup_ids map (struct scope_cgroup_set): the ids, in order.
fn id_set(ids: &[u64; MAX_CGROUPS]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_ne_bytes()).collect()
}

/// One `--cgroup` slot, as followed while the run goes on.
struct WatchedCgroup {
    path: PathBuf,
    /// The id the kernel filter holds for it now.
    id: u64,
    /// Named by path: followed. A cgroup named by its id is that cgroup only.
    by_path: bool,
    /// Its path is gone (said once).
    gone: bool,
}

/// The run's `--cgroup` filters: the slots every tracer of the run was given (each tracer
/// resolves the same flags, in the same order), and the maps of every tracer that
/// installed them.
struct CgroupWatch {
    slots: Vec<WatchedCgroup>,
    /// (cgroup array, scope_cgroup_ids) of each installed filter.
    filters: Vec<(MapHandle, MapHandle)>,
    checked: Instant,
}

static CGROUP_WATCH: std::sync::Mutex<Option<CgroupWatch>> = std::sync::Mutex::new(None);

/// How often at most the followed cgroups' paths are looked at.
const CGROUP_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Forgets the cgroups an earlier run followed (a new run starts).
pub fn forget_cgroups() {
    *CGROUP_WATCH.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Follows the `--cgroup` paths of the run (called from the run loops; looks at most once
/// a second): a cgroup removed and made again at the same path (a service restarted) has
/// a new id, and the kernel filter would otherwise go on waiting for the old one and
/// count nothing more. The new cgroup replaces the old in every tracer's filter, and one
/// stderr line says so; a path that disappears is said once too.
pub fn follow_cgroups() {
    let mut guard = CGROUP_WATCH.lock().unwrap_or_else(|e| e.into_inner());
    let Some(watch) = guard.as_mut() else {
        return;
    };
    if watch.checked.elapsed() < CGROUP_CHECK_EVERY {
        return;
    }
    watch.checked = Instant::now();
    let mut ids = [0u64; MAX_CGROUPS];
    let mut changed = false;
    for (i, slot) in watch.slots.iter_mut().enumerate().take(MAX_CGROUPS) {
        ids[i] = slot.id;
        if !slot.by_path {
            continue;
        }
        let now = cgroup_id(&slot.path)
            .ok()
            .filter(|_| slot.path.join("cgroup.procs").exists());
        match now {
            Some(id) if id == slot.id => slot.gone = false,
            Some(_) => {
                // The id is the opened directory's: the path may have been made again
                // meanwhile.
                let Ok(dir) = std::fs::File::open(&slot.path) else {
                    continue;
                };
                let Ok(id) = dir
                    .metadata()
                    .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                else {
                    continue;
                };
                let fd = dir.as_raw_fd() as u32;
                let mut failed = None;
                for (arrays, _) in &watch.filters {
                    if let Err(e) =
                        arrays.update(&(i as u32).to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
                    {
                        failed = Some(e);
                    }
                }
                if let Some(e) = failed {
                    eprintln!(
                        "btrace: cgroup {} was made again, but the filter could not take the new one: {e}",
                        slot.path.display()
                    );
                    continue;
                }
                eprintln!(
                    "btrace: cgroup {} was made again (id {} now, {} before): tracing the new one",
                    slot.path.display(),
                    id,
                    slot.id
                );
                slot.id = id;
                slot.gone = false;
                ids[i] = id;
                changed = true;
            }
            None if !slot.gone => {
                slot.gone = true;
                eprintln!(
                    "btrace: cgroup {} was removed: nothing to trace there until it is made again",
                    slot.path.display()
                );
            }
            None => {}
        }
    }
    if changed {
        for (_, id_map) in &watch.filters {
            if let Err(e) = id_map.update(&0u32.to_ne_bytes(), &id_set(&ids), MapFlags::ANY) {
                eprintln!("btrace: the cgroup filter's ids could not be rewritten: {e}");
            }
        }
    }
}

/// Puts the dashboard's cgroup filter (`spec`, None for none) in the live slot of a
/// tracer's cgroup array (after the --cgroup slots: SCOPE_LIVE_CGROUP_SLOT in scope.h);
/// the id for the `.bss` switch, 0 for none, written after this.
pub fn install_live_cgroup(cgroups: &dyn MapCore, spec: Option<&str>) -> Result<u64> {
    let Some(spec) = spec else {
        return Ok(0);
    };
    let (live, c) = LiveCgroup::resolve(spec)?;
    let fd = c.dir.as_raw_fd() as u32;
    cgroups
        .update(
            &LIVE_CGROUP_SLOT.to_ne_bytes(),
            &fd.to_ne_bytes(),
            MapFlags::ANY,
        )
        .with_context(|| format!("setting the cgroup filter to {}", live.path.display()))?;
    Ok(live.id)
}

/// Makes a long-lived tracer's process tree the dashboard's pid filter: cleared, then
/// `pid` and its descendants seeded (nothing for no pid). Written before the .bss switch
/// ([`set_live_scope!`](crate::set_live_scope)) turns it on.
pub fn prepare_live_tree(procs: &dyn MapCore, pid: Option<u32>) -> Result<()> {
    match pid {
        Some(root) => seed_tree(procs, root, true),
        None => Ok(()),
    }
}

/// Writes the run-time part of the scope into a tracer's `.bss` copy: the dashboard's pid
/// filter follows the process and what it starts (its tree, prepared with
/// [`prepare_live_tree`]); its cgroup filter is the id [`install_live_cgroup`] gave.
#[macro_export]
macro_rules! set_live_scope {
    ($bss:expr, $filter:expr, $cgroup_id:expr) => {{
        let f = $filter; // a &tracers::LiveFilter, named by the callers (core is below tracers)
        $bss.scope_live_tgid = 0;
        $bss.scope_live_tree = f.pid.is_some();
        $bss.scope_live_cgroup = $cgroup_id;
    }};
}

/// Seeds `root` and its descendants into a process-tree bitmap (`fresh`: clear it first,
/// for a new run-time tree).
pub fn seed_tree(procs: &dyn MapCore, root: u32, fresh: bool) -> Result<()> {
    let bitmap = Bitmap::map(procs)?;
    if fresh {
        bitmap.clear();
    }
    bitmap.set(root);
    // Two rounds: a process forked during the first walk by one not yet in the tree is
    // found by the second.
    for _ in 0..2 {
        for pid in descendants(root) {
            bitmap.set(pid);
        }
    }
    Ok(())
}

/// Attaches the tree-keeping programs of a loaded object (those left to autoload), for
/// tracers that attach their own programs one by one.
pub fn attach_tree(obj: &Object) -> Result<Vec<libbpf_rs::Link>> {
    obj.progs_mut()
        .filter(|p| p.autoload() && p.name().to_string_lossy().starts_with("scope_"))
        .map(|p| {
            p.attach()
                .with_context(|| format!("attaching {}", p.name().to_string_lossy()))
        })
        .collect()
}

/// A map of a loaded object, by name.
pub fn map<'o>(obj: &'o Object, name: &str) -> Result<libbpf_rs::Map<'o>> {
    obj.maps()
        .find(|m| m.name() == name)
        .with_context(|| format!("the object has no map {name}"))
}

/// The process-tree bitmap, mapped into this process: bits are set with atomic ORs, as
/// the kernel programs set and clear them with atomic adds.
struct Bitmap {
    addr: *mut AtomicU64,
    words: usize,
    len: usize,
}

impl Bitmap {
    fn map(procs: &dyn MapCore) -> Result<Bitmap> {
        let words = procs.max_entries() as usize;
        let len = (words * 8).next_multiple_of(4096);
        // SAFETY: maps an mmapable array map (BPF_F_MMAPABLE in scope.h) of `words` u64
        // values, shared and writable, at an address the kernel chooses.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                procs.as_fd().as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mapping the process tree");
        }
        Ok(Bitmap {
            addr: addr.cast(),
            words,
            len,
        })
    }

    fn clear(&self) {
        for i in 0..self.words {
            // SAFETY: as in set(): i is within the mapping.
            unsafe { &*self.addr.add(i) }.store(0, Ordering::SeqCst);
        }
    }

    fn set(&self, pid: u32) {
        let i = pid as usize / 64;
        if i < self.words {
            // SAFETY: i is within the mapping, which is u64-aligned (page-aligned) and
            // lives until drop; the kernel only touches it with atomic operations.
            let w = unsafe { &*self.addr.add(i) };
            w.fetch_or(1 << (pid % 64), Ordering::SeqCst);
        }
    }
}

// SAFETY: the mapping is shared memory owned by this struct alone (unmapped once, in
// drop); every access goes through atomics, so any thread may hold it.
unsafe impl Send for Bitmap {}

impl Bitmap {
    /// The pids whose bits are set now.
    fn set_bits(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.words).flat_map(move |i| {
            // SAFETY: as in set(): i is within the mapping.
            let mut w = unsafe { &*self.addr.add(i) }.load(Ordering::SeqCst);
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros();
                w &= w - 1;
                Some(i as u32 * 64 + bit)
            })
        })
    }
}

impl Drop for Bitmap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in map(), unmapped once.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}
