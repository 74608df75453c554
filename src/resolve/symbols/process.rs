// SPDX-License-Identifier: Apache-2.0
//! What a process maps: /proc/PID/maps read into an address space while it lives, the
//! address space it has now, and its perf map of JIT code.

use super::*;

impl Symbolizer {
    pub(super) fn read_space(&mut self, proc_pid: u32, mm: Option<MmId>) -> Option<AddrSpace> {
        let dir = format!("/proc/{proc_pid}");
        if let Some(want) = mm {
            if current_mm(&dir)? != want {
                return None;
            }
        }
        let lines = read_maps(&format!("{dir}/maps")).ok()?;
        let same_root = self.own_root.is_some() && dir_id(&format!("{dir}/root")) == self.own_root;
        let inner_pid = inner_pid(&dir).unwrap_or(proc_pid);
        let mut maps = Vec::new();
        for l in lines.into_iter().filter(|l| l.exec) {
            let kind = if l.path == "[vdso]" {
                MapKind::Vdso
            } else if l.path.starts_with('/') && l.inode != 0 {
                let name = l.path.trim_end_matches(" (deleted)").to_string();
                let key = (l.dev, l.inode);
                let entry = self.files.entry(key).or_default();
                entry.refs += 1;
                entry.map_file = Some(format!("{dir}/map_files/{:x}-{:x}", l.start, l.end));
                if same_root && !l.path.ends_with(" (deleted)") {
                    entry.host_path = Some(name.clone());
                }
                // Opened now, while the process lives (its map_files link works).
                self.open_file(key);
                MapKind::File { name, key }
            } else if l.path.is_empty() {
                MapKind::Anon("[anon]".into())
            } else {
                MapKind::Anon(l.path.clone())
            };
            maps.push(Mapping {
                start: l.start,
                end: l.end,
                offset: l.offset,
                kind,
            });
        }
        Some(AddrSpace {
            maps,
            dir,
            mm,
            same_root,
            inner_pid,
            perf_map: None,
        })
    }
}

/// The most of a perf map read: far more than a JIT writes in a long run, and a bound
/// on what a planted file can make btrace hold.
const PERF_MAP_MAX: u64 = 256 << 20;

impl AddrSpace {
    /// The JIT symbol at `addr` from the process's perf map (read once, at first need):
    /// in btrace's /tmp when the process shares btrace's root, else through its root
    /// (a container's /tmp is its own) while it still has this address space.
    pub(super) fn perf_map_lookup(&mut self, addr: u64) -> Option<String> {
        if self.perf_map.is_none() {
            let name = format!("tmp/perf-{}.map", self.inner_pid);
            let path = if self.same_root {
                Some(format!("/{name}"))
            } else {
                let now = current_mm(&self.dir);
                (now.is_some() && (self.mm.is_none() || now == self.mm))
                    .then(|| format!("{}/root/{name}", self.dir))
            };
            let text = path
                .and_then(|p| crate::resolve::read_planted_file(Path::new(&p), PERF_MAP_MAX))
                .unwrap_or_default();
            self.perf_map = Some(parse_perf_map(&text));
        }
        let map = self.perf_map.as_ref()?;
        // Later lines win (a JIT may reuse memory): search from the end.
        map.iter()
            .rev()
            .find(|(s, e, _)| *s <= addr && addr < *e)
            .map(|(_, _, n)| n.clone())
    }
}

/// A perf map (`START SIZE NAME` per line, hex numbers with or without 0x).
pub fn parse_perf_map(text: &str) -> Vec<(u64, u64, String)> {
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    text.lines()
        .filter_map(|l| {
            let mut w = l.splitn(3, ' ');
            let start = hex(w.next()?)?;
            let size = hex(w.next()?)?;
            let name = w.next()?.trim();
            (!name.is_empty()).then(|| (start, start.saturating_add(size), name.to_string()))
        })
        .collect()
}

/// One line of /proc/PID/maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsLine {
    pub start: u64,
    pub end: u64,
    pub exec: bool,
    pub offset: u64,
    /// Device as (major << 20 | minor)... kept as the raw pair folded into one number.
    pub dev: u64,
    pub inode: u64,
    pub path: String,
}

pub fn parse_maps(text: &str) -> Vec<MapsLine> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.splitn(6, ' ');
            let (range, perms, off, dev, inode) =
                (w.next()?, w.next()?, w.next()?, w.next()?, w.next()?);
            let path = w.next().unwrap_or("").trim_start().to_string();
            let (s, e) = range.split_once('-')?;
            let (maj, min) = dev.split_once(':')?;
            Some(MapsLine {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                exec: perms.as_bytes().get(2) == Some(&b'x'),
                offset: u64::from_str_radix(off, 16).ok()?,
                dev: (u64::from_str_radix(maj, 16).ok()? << 32)
                    | u64::from_str_radix(min, 16).ok()?,
                inode: inode.parse().ok()?,
                path,
            })
        })
        .collect()
}

pub(super) fn read_maps(path: &str) -> std::io::Result<Vec<MapsLine>> {
    Ok(parse_maps(&std::fs::read_to_string(path)?))
}

/// The address space a process has now, as the kernel reports it with stacks.
pub(super) fn current_mm(dir: &str) -> Option<MmId> {
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // Fields after the comm: state is field 3; startstack is field 28.
    let rest = stat.rsplit_once(") ")?.1;
    let start_stack = rest.split_whitespace().nth(28 - 3)?.parse().ok()?;
    let exe_ino = std::fs::metadata(format!("{dir}/exe")).ok()?.ino();
    Some(MmId {
        start_stack,
        exe_ino,
    })
}

/// The process's pid in its own (innermost) pid namespace, from /proc/PID/status.
fn inner_pid(dir: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// A directory's (device, inode), through symbolic links (`/proc/PID/root`).
pub(super) fn dir_id(path: &str) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines() {
        let m = parse_maps(
            "00400000-00401000 r--p 00000000 08:01 1234 /usr/bin/x\n\
             00401000-00402000 r-xp 00001000 08:01 1234 /usr/bin/x\n\
             7fff0000-7fff2000 r-xp 00000000 00:00 0 [vdso]\n\
             7f000000-7f001000 rwxp 00000000 00:00 0 \n\
             7e000000-7e001000 r-xp 00002000 fd:02 99 /tmp/a b (deleted)\n",
        );
        assert_eq!(m.len(), 5);
        assert!(!m[0].exec && m[1].exec);
        assert_eq!(m[1].offset, 0x1000);
        assert_eq!(m[1].inode, 1234);
        assert_eq!(m[2].path, "[vdso]");
        assert_eq!(m[3].path, "");
        assert_eq!(m[4].path, "/tmp/a b (deleted)");
        assert_ne!(m[4].dev, m[1].dev);
    }

    #[test]
    fn perf_maps() {
        let p = parse_perf_map("7f0000001000 40 jit_fn one\n0x7f0000002000 0x10 other\nbad\n");
        assert_eq!(
            p,
            vec![
                (0x7f0000001000, 0x7f0000001040, "jit_fn one".to_string()),
                (0x7f0000002000, 0x7f0000002010, "other".to_string())
            ]
        );
    }
}
