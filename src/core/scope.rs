// SPDX-License-Identifier: Apache-2.0
//! The scope filter's user side: which tasks a tracer records (src/bpf/include/scope.h).
//!
//! | flags | traced |
//! |---|---|
//! | `-c CMD` | CMD and every process it starts, recursively (daemons and re-parented ones too) |
//! | `-p PID` | PID, the descendants it has at start, and every process they start afterwards |
//! | `--no-children` with `-c`/`-p` | that one process only (its threads included) |
//! | `--cgroup PATH` (repeatable) | tasks in one of those cgroup v2 groups or below them |
//! | `--tid TID`, `--comm NAME` | only that thread, only tasks of that name |
//!
//! Filters combine with AND. Every tracer takes the same [`Scope`]: its rodata is written
//! with [`apply_scope!`](crate::apply_scope) before load, and [`Scope::install`] fills its
//! maps (cgroups, the process tree) after load.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::core::abi::COMM_LEN;
use crate::core::pidns::PidView;

#[derive(Args, Debug, Clone, Default)]
pub struct ScopeArgs {
    /// With -p/-c: that one process only, not the processes it starts
    #[arg(long)]
    pub no_children: bool,
    /// Only tasks in this cgroup v2 group or below it: a path (absolute, or relative to
    /// the cgroup2 mount, e.g. system.slice/nginx.service) or a cgroup id (repeatable)
    #[arg(long = "cgroup", value_name = "PATH|ID")]
    pub cgroups: Vec<String>,
    /// Trace only this thread id
    #[arg(long, value_name = "TID", value_parser = clap::value_parser!(u32).range(1..))]
    pub tid: Option<u32>,
    /// Trace only tasks with this name (as in /proc/PID/comm; longer names are cut to 15 characters like the kernel's)
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
}

/// Cgroups a filter may name at once (SCOPE_MAX_CGROUPS in abi.h).
pub const MAX_CGROUPS: usize = crate::core::abi::types::scope_limits::SCOPE_MAX_CGROUPS.0 as usize;
/// The cgroup array's slot of the dashboard's cgroup filter.
const LIVE_CGROUP_SLOT: u32 = crate::core::abi::types::scope_limits::SCOPE_LIVE_CGROUP_SLOT.0;

/// A cgroup v2 group, resolved.
#[derive(Debug)]
pub struct CgroupTarget {
    pub path: PathBuf,
    /// The cgroup's id: the inode number of its directory (what the kernel reports).
    pub id: u64,
    /// Its directory, open: what a cgroup array entry is made from.
    pub dir: OwnedFd,
    /// Named by its path (not by an id): a cgroup made again at that path replaces it.
    pub by_path: bool,
}

/// The whole scope, as the kernel programs take it.
#[derive(Debug, Default)]
pub struct Scope {
    /// Only this process, exactly (--no-children); 0 = any.
    pub tgid: u32,
    /// The root of a process tree to follow (-p/-c), if any.
    pub tree: Option<u32>,
    /// Only this thread; 0 = any.
    pub tid: u32,
    /// NUL-padded comm, when filtering by name.
    pub comm: Option<[u8; COMM_LEN]>,
    pub cgroups: Vec<CgroupTarget>,
    /// Keep a process tree at run time (the dashboard's pid filter): the bitmap is sized
    /// and the tree-keeping programs loaded although no tree is followed yet.
    pub live_tree: bool,
    /// btrace's pid namespace: the ids above are host ids; the user's (and /proc's) are
    /// this namespace's.
    pids: std::cell::RefCell<PidView>,
    /// The tree's root as btrace's namespace numbers it (for walking /proc).
    tree_ns: Option<u32>,
}

impl Scope {
    /// The scope of a run: `target` is the -p/-c process, if any.
    pub fn new(target: Option<u32>, args: &ScopeArgs) -> Result<Self> {
        let mut pids = PidView::new()?;
        // The kernel programs compare host ids: ids given here are btrace's namespace's.
        let host = |pids: &mut PidView, id: u32, what: &str| {
            pids.to_host(id)
                .with_context(|| format!("{what} {id} is not visible from btrace's pid namespace"))
        };
        if let Some(tid) = args.tid {
            match crate::core::target::task_info(tid) {
                None => bail!("no thread with id {tid}"),
                Some(t) if target.is_some_and(|p| p != t.tgid) && args.no_children => bail!(
                    "thread {tid} belongs to process {}, not to the traced process {}",
                    t.tgid,
                    target.unwrap_or(0)
                ),
                Some(_) => {}
            }
        }
        if args.no_children && target.is_none() {
            bail!("--no-children applies to -p or -c: give one of them");
        }
        if args.cgroups.len() > MAX_CGROUPS {
            bail!("--cgroup can be given at most {MAX_CGROUPS} times");
        }
        let cgroups = args
            .cgroups
            .iter()
            .map(|c| resolve_cgroup(c))
            .collect::<Result<Vec<_>>>()?;
        let host_target = target.map(|p| host(&mut pids, p, "process")).transpose()?;
        let (tgid, tree) = match (host_target, args.no_children) {
            (Some(p), true) => (p, None),
            (Some(p), false) => (0, Some(p)),
            (None, _) => (0, None),
        };
        let tid = args
            .tid
            .map(|t| host(&mut pids, t, "thread"))
            .transpose()?
            .unwrap_or(0);
        Ok(Scope {
            tgid,
            tree,
            tree_ns: target.filter(|_| !args.no_children),
            pids: std::cell::RefCell::new(pids),
            tid,
            comm: args.comm.as_deref().map(comm_bytes).transpose()?,
            cgroups,
            live_tree: false,
        })
    }

    /// The dashboard's scope: nothing fixed, a process tree kept for its pid filter.
    pub fn live() -> Self {
        Scope {
            live_tree: true,
            ..Default::default()
        }
    }

    /// Only the process `tgid` and what it starts (None: everything).
    pub fn process(tgid: Option<u32>) -> Self {
        Scope {
            tree: tgid,
            tree_ns: tgid,
            ..Default::default()
        }
    }

    /// Whether any filter is on (everything is traced otherwise).
    pub fn is_on(&self) -> bool {
        self.tgid != 0
            || self.tree.is_some()
            || self.tid != 0
            || self.comm.is_some()
            || !self.cgroups.is_empty()
            || self.live_tree
    }

    /// The name filter as C `char` values, for a skeleton's rodata.
    pub fn comm_chars(&self) -> [i8; COMM_LEN] {
        self.comm.unwrap_or_default().map(|b| b as i8)
    }

    /// The cgroup ids, padded, for a skeleton's rodata.
    pub fn cgroup_ids(&self) -> [u64; MAX_CGROUPS] {
        let mut ids = [0u64; MAX_CGROUPS];
        for (slot, c) in ids.iter_mut().zip(&self.cgroups) {
            *slot = c.id;
        }
        ids
    }

    /// Entries of the process-tree bitmap: one bit per possible pid (1 when unused).
    pub fn tree_words(&self) -> u32 {
        if self.tree.is_none() && !self.live_tree {
            return 1;
        }
        pid_max().div_ceil(64).max(1)
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

/// The dashboard's cgroup filter, once installed in a tracer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveCgroup {
    pub path: PathBuf,
    pub id: u64,
}

impl LiveCgroup {
    /// The cgroup (a path under the cgroup v2 mount, or an id) named by `spec`.
    pub fn resolve(spec: &str) -> Result<(LiveCgroup, CgroupTarget)> {
        let c = resolve_cgroup(spec)?;
        Ok((
            LiveCgroup {
                path: c.path.clone(),
                id: c.id,
            },
            c,
        ))
    }

    /// Ids of the cgroup and of every cgroup below it now (a cgroup's id is the inode
    /// number of its directory): for filters applied in user space to ids events carry.
    pub fn subtree_ids(&self) -> std::collections::HashSet<u64> {
        use std::os::unix::fs::MetadataExt;
        let mut ids = std::collections::HashSet::from([self.id]);
        let mut dirs = vec![self.path.clone()];
        while let Some(d) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                if let Ok(m) = e.metadata() {
                    if m.is_dir() && ids.insert(m.ino()) {
                        dirs.push(e.path());
                    }
                }
            }
        }
        ids
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
pub fn attach_tree(obj: &libbpf_rs::Object) -> Result<Vec<libbpf_rs::Link>> {
    obj.progs_mut()
        .filter(|p| p.autoload() && p.name().to_string_lossy().starts_with("scope_"))
        .map(|p| {
            p.attach()
                .with_context(|| format!("attaching {}", p.name().to_string_lossy()))
        })
        .collect()
}

/// Writes a [`Scope`] into an open skeleton (every tracer includes scope.h): rodata, the
/// process bitmap's size, and which tree-keeping programs load (`raw`: on raw_tp, else on
/// classic tracepoints). `apply_scope!(open_skel, &scope, raw)?`-style use inside a
/// closure returning `Result`.
#[macro_export]
macro_rules! apply_scope {
    ($open:expr, $scope:expr, $raw:expr) => {{
        let scope: &$crate::core::scope::Scope = $scope;
        let raw: bool = $raw;
        {
            let ro = $crate::rodata_mut!($open);
            ro.scope_tgid = scope.tgid;
            ro.scope_tree = scope.tree.is_some();
            ro.scope_tid = scope.tid;
            ro.scope_ncgroups = scope.cgroups.len() as u32;
            ro.scope_by_comm = scope.comm.is_some();
            ro.scope_comm = scope.comm_chars();
            let (dev, ino) = $crate::core::pidns::own_ns_dev_ino().unwrap_or((0, 0));
            ro.scope_ns_dev = dev;
            ro.scope_ns_ino = ino;
        }
        $open.maps.scope_procs.set_max_entries(scope.tree_words())?;
        let tree = scope.tree.is_some() || scope.live_tree;
        $open.progs.scope_fork_raw.set_autoload(tree && raw);
        $open.progs.scope_exit_raw.set_autoload(tree && raw);
        $open.progs.scope_fork_tp.set_autoload(tree && !raw);
        $open.progs.scope_exit_tp.set_autoload(tree && !raw);
    }};
}

/// The kernel's pid_max: pids stay below it.
pub fn pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 22)
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

/// Every live descendant of `root` (children, their children...), from /proc.
pub fn descendants(root: u32) -> BTreeSet<u32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && found.insert(child) {
                frontier.push(child);
            }
        }
    }
    found
}

pub use crate::resolve::cgroups::cgroup2_mount;

/// A cgroup's id: the inode number of its directory on the cgroup2 mount.
pub fn cgroup_id(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(dir)
        .with_context(|| format!("reading cgroup {}", dir.display()))?
        .ino())
}

/// `--cgroup PATH|ID` as a cgroup of the v2 hierarchy.
fn resolve_cgroup(spec: &str) -> Result<CgroupTarget> {
    // An empty path (or `.`) would name the root cgroup: the whole machine, by accident.
    if Path::new(spec.trim())
        .components()
        .all(|c| c == std::path::Component::CurDir)
    {
        bail!(
            "--cgroup '{spec}' names no cgroup (it would be the root cgroup: the whole machine); give a cgroup's path or id, or leave --cgroup out to trace everything"
        );
    }
    let Some(root) = cgroup2_mount() else {
        bail!(
            "--cgroup needs the cgroup v2 hierarchy, which is not mounted here (cgroup v1 only); mount it with `mount -t cgroup2 none /sys/fs/cgroup/unified` or boot with systemd.unified_cgroup_hierarchy=1"
        );
    };
    let path = if let Ok(id) = spec.parse::<u64>() {
        find_cgroup_by_id(&root, id).with_context(|| {
            format!(
                "--cgroup {spec}: no cgroup with that id under {}",
                root.display()
            )
        })?
    } else {
        let p = Path::new(spec);
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        };
        if !full.exists() {
            bail!(
                "--cgroup {spec}: no such cgroup ({} does not exist)",
                full.display()
            );
        }
        if !full.starts_with(&root) {
            bail!(
                "--cgroup {spec}: not under the cgroup v2 mount {} (cgroup v1 groups cannot be filtered on)",
                root.display()
            );
        }
        if !full.join("cgroup.procs").exists() {
            bail!(
                "--cgroup {spec}: no such cgroup ({} has no cgroup.procs)",
                full.display()
            );
        }
        full
    };
    let dir = std::fs::File::open(&path)
        .map(OwnedFd::from)
        .with_context(|| format!("opening cgroup {}", path.display()))?;
    Ok(CgroupTarget {
        id: cgroup_id(&path)?,
        path,
        dir,
        by_path: spec.parse::<u64>().is_err(),
    })
}

fn find_cgroup_by_id(root: &Path, id: u64) -> Option<PathBuf> {
    if cgroup_id(root).ok()? == id {
        return Some(root.to_path_buf());
    }
    for e in std::fs::read_dir(root).ok()?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if let Some(p) = find_cgroup_by_id(&e.path(), id) {
                return Some(p);
            }
        }
    }
    None
}

/// `name` as the kernel stores a comm: at most 15 bytes, NUL-padded.
pub fn comm_bytes(name: &str) -> Result<[u8; COMM_LEN]> {
    if name.is_empty() {
        bail!("--comm needs a non-empty name");
    }
    let mut out = [0u8; COMM_LEN];
    let b = name.as_bytes();
    let n = b.len().min(COMM_LEN - 1);
    out[..n].copy_from_slice(&b[..n]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_is_cut_like_the_kernel_does() {
        assert_eq!(&comm_bytes("workload").unwrap()[..9], b"workload\0");
        let long = comm_bytes("systemd-journald").unwrap();
        assert_eq!(&long[..15], b"systemd-journal");
        assert_eq!(long[15], 0);
        assert!(comm_bytes("").is_err());
    }

    #[test]
    fn descendants_of_this_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let d = descendants(std::process::id());
        child.kill().ok();
        child.wait().ok();
        assert!(d.contains(&child.id()), "{d:?}");
    }
}
