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
//! Filters combine with AND. Every tracer takes the same [`Scope`]; core::lifecycle writes
//! it into the tracer's object before load ([`Scope::configure`]) and fills its maps
//! (cgroups, the process tree) after load and attach ([`Scope::install`], [`Scope::seed`]):
//! the kernel side is in kernel.rs, this file parses and resolves the flags.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::core::pidns::PidView;
use crate::model::abi::COMM_LEN;

#[derive(Args, Debug, Clone, Default)]
pub struct ScopeArgs {
    /// With -p/-c: that one process only, not the processes it starts
    #[arg(long)]
    pub no_children: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// The scope flags that apply without -p/-c: all a command without a target takes (serve:
/// a command shows only the flags it accepts).
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
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
pub const MAX_CGROUPS: usize = crate::model::abi::types::scope_limits::SCOPE_MAX_CGROUPS.0 as usize;

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
        if let Some(tid) = args.filter.tid {
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
        if args.filter.cgroups.len() > MAX_CGROUPS {
            bail!("--cgroup can be given at most {MAX_CGROUPS} times");
        }
        let cgroups = args
            .filter
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
            .filter
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
            comm: args.filter.comm.as_deref().map(comm_bytes).transpose()?,
            cgroups,
            live_tree: false,
        })
    }

    /// The scope of a command without -p/-c (the long-lived tracers'): `args` alone.
    pub fn filtered(args: &FilterArgs) -> Result<Self> {
        let args = ScopeArgs {
            no_children: false,
            filter: args.clone(),
        };
        Scope::new(None, &args)
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
}

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

/// The kernel's pid_max: pids stay below it.
pub fn pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 22)
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

pub mod kernel;
pub use kernel::*;

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
