// SPDX-License-Identifier: Apache-2.0
//! Cgroup ids as paths: the kernel reports a task's cgroup v2 by id (the inode number of
//! its directory); people know cgroups by path (`system.slice/nginx.service`, a
//! container's scope). The hierarchy is walked once, and again (at most every 100 ms) when
//! an id is not known yet: cgroups come and go.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The cgroup v2 mount: `/sys/fs/cgroup` on a pure v2 system, `/sys/fs/cgroup/unified` on
/// a hybrid one.
pub fn cgroup2_mount() -> Option<PathBuf> {
    super::mount_point("cgroup2")
}

#[derive(Default)]
pub struct CgroupNames {
    root: Option<PathBuf>,
    by_id: HashMap<u64, String>,
    walked: Option<Instant>,
}

const REWALK_AT_MOST: Duration = Duration::from_millis(100);

impl CgroupNames {
    pub fn new() -> CgroupNames {
        let mut c = CgroupNames {
            root: cgroup2_mount(),
            ..Default::default()
        };
        c.walk();
        c
    }

    fn walk(&mut self) {
        self.walked = Some(Instant::now());
        let Some(root) = self.root.clone() else {
            return;
        };
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            if let Ok(m) = std::fs::metadata(&dir) {
                self.by_id.insert(m.ino(), relative(&root, &dir));
            }
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }

    /// Walks the hierarchy again now, forgetting cgroups that were removed.
    pub fn rewalk(&mut self) {
        self.by_id.clear();
        self.walk();
    }

    /// The path of `id` as of the last walk, without walking.
    pub fn known(&self, id: u64) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    /// The cgroup2 mount this names cgroups below.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The cgroup's path below the cgroup2 mount (`/` for the root); None for an id that
    /// is not (or no longer) in the hierarchy, and for 0 (no cgroup v2).
    pub fn path(&mut self, id: u64) -> Option<&str> {
        if id == 0 {
            return None;
        }
        if !self.by_id.contains_key(&id)
            && self.walked.is_none_or(|t| t.elapsed() >= REWALK_AT_MOST)
        {
            self.walk();
        }
        self.by_id.get(&id).map(String::as_str)
    }
}

fn relative(root: &Path, dir: &Path) -> String {
    match dir.strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => "/".into(),
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => dir.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_cgroup_path() {
        let mut names = CgroupNames::new();
        let Some(root) = cgroup2_mount() else {
            return; // no cgroup v2 here: nothing to name (the scope tests fail loudly)
        };
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap()
            .to_string();
        let id = std::fs::metadata(root.join(rel.trim_start_matches('/')))
            .unwrap()
            .ino();
        assert_eq!(names.path(id), Some(rel.as_str()));
        assert_eq!(names.path(0), None);
    }
}
