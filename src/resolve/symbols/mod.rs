// SPDX-License-Identifier: Apache-2.0
//! Stack addresses as function names, for every command that records stacks (`profile`,
//! `offcpu`, `--stack` on `kprobe` and `tracepoint`), with blazesym (the libbpf project's
//! symbolization library):
//!
//! - kernel frames from /proc/kallsyms;
//! - user frames from the ELF symbols and DWARF of the file mapped at the address (with
//!   the functions inlined there, where debug information exists), the file opened
//!   through `/proc/PID/map_files` (or `/proc/PID/root`), so binaries inside containers
//!   and deleted ones resolve; the vDSO through btrace's own (the kernel's one image);
//!   JIT code through the process's perf map (`/tmp/perf-PID.map` in its root);
//! - processes that exit before the run ends: their maps are read, and their files
//!   opened, while they live ([`Symbolizer::capture`], at a process's first recorded
//!   stack); a profiler symbolizes their stacks soon after they end and lets go of them
//!   ([`Symbolizer::release`]). Descriptors stay bounded: at most
//!   [`Symbolizer::open_cap`] files are open, the least recently used closed first and
//!   opened again at need; a file that cannot be opened leaves its frames unknown
//!   (counted: [`Symbolizer::unreadable`]).
//!
//! An address that cannot be named is `[unknown] module+0xoffset`, never a wrong name:
//! maps are used only for the address space a stack was taken in ([`MmId`]: a process that
//! exec'd since has other maps).

mod kernel;
mod process;
mod user;

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blazesym::symbolize::source::{Elf, Kernel, Process, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer as Blaze};
use blazesym::{MaybeDefault, Pid};

use kernel::KernelText;
use process::{current_mm, dir_id, read_maps};
pub use process::{parse_maps, parse_perf_map, MapsLine};
pub use user::{after_call, demangle};

use crate::model::stacks::Frame;

/// What identifies an address space (struct mm_id in stacks.h): its stack's start and
/// the inode of its executable, as the kernel saw them with a stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmId {
    pub start_stack: u64,
    pub exe_ino: u64,
}

/// A mapped file open now, read through `/proc/self/fd/N`.
#[derive(Debug)]
struct OpenFile {
    file: File,
    path: PathBuf,
    /// The tick of its last use (the least recently used one is closed first).
    used: u64,
}

/// A file mapped by processes btrace saw, by (device, inode): shared by every process
/// mapping it. At most [`Symbolizer::open_cap`] of them are open at a time; one closed is
/// opened again when needed, through a path checked against its inode.
#[derive(Debug, Default)]
struct FileEntry {
    /// `/proc/PID/map_files/START-END` of the last process seen mapping it (works for
    /// deleted files and other mount namespaces while that process lives).
    map_file: Option<String>,
    /// Its path under btrace's own root, when the process mapping it shares that root.
    host_path: Option<String>,
    open: Option<OpenFile>,
    /// Mappings of the address spaces held that name it; at 0 (and closed), the entry goes.
    refs: usize,
    /// What each file offset symbolizes to (module: the path of the first mapping seen).
    frames: HashMap<u64, Arc<[Frame]>>,
}

#[derive(Clone, Debug)]
enum MapKind {
    File {
        /// The path the process maps it under (for display).
        name: String,
        /// (device, inode): the key of its [`FileEntry`].
        key: (u64, u64),
    },
    Vdso,
    /// Anonymous executable memory (JIT code), or another special mapping.
    Anon(String),
}

#[derive(Clone, Debug)]
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    kind: MapKind,
}

/// A process's executable mappings, read while it lived. Holds no descriptor.
#[derive(Debug)]
struct AddrSpace {
    maps: Vec<Mapping>,
    /// `/proc/PID` as btrace sees it.
    dir: String,
    /// The address space it was read for (None: read without a check, the process alive).
    mm: Option<MmId>,
    /// Whether its root directory is btrace's (its /tmp is btrace's /tmp).
    same_root: bool,
    /// Its pid in its own pid namespace (the name of its perf map).
    inner_pid: u32,
    /// JIT symbols from the perf map, read at first need: (start, end, name).
    perf_map: Option<Vec<(u64, u64, String)>>,
}

/// A user stack symbolized: each address with its frames (outermost first), the frames
/// shared with every other stack through the same code. Compact enough to keep for the
/// stacks of processes that are gone.
#[derive(Clone, Debug, Default)]
pub struct UserFrames(Vec<(u64, Arc<[Frame]>)>);

impl UserFrames {
    /// The frames, innermost first (for each address, the inlined functions first).
    pub fn frames(&self) -> Vec<Frame> {
        let mut out = Vec::new();
        for (a, frames) in &self.0 {
            for f in frames.iter().rev() {
                let mut f = f.clone();
                f.addr = *a;
                out.push(f);
            }
        }
        out
    }
}

/// Symbolizes kernel and user stacks. What it keeps stays bounded however many processes
/// come and go: the maps of the address spaces held (let go with [`Symbolizer::release`]),
/// at most [`Symbolizer::open_cap`] open files, and the names found, per file and offset.
pub struct Symbolizer {
    blaze: Blaze,
    /// (host pid, generation) -> the address space, or None: known not to be readable.
    spaces: HashMap<(u32, u64), Option<AddrSpace>>,
    /// Files by (device, inode), shared by every process mapping them.
    files: HashMap<(u64, u64), FileEntry>,
    /// How many of `files` are open, and at most how many may be.
    open_count: usize,
    open_cap: usize,
    tick: u64,
    /// User frames left unknown because their file could not be opened.
    unreadable: u64,
    kernel_cache: HashMap<u64, Vec<Frame>>,
    vdso_cache: HashMap<u64, Arc<[Frame]>>,
    /// btrace's own vDSO: (start, end).
    own_vdso: Option<(u64, u64)>,
    /// btrace's root directory: (device, inode).
    own_root: Option<(u64, u64)>,
    /// Where kernel code is, to check every kernel name (read at first need).
    ktext: Option<KernelText>,
    /// Captures found ended by the last [`Symbolizer::release_ended`], let go by the next.
    ended_before: std::collections::HashSet<(u32, u64)>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    pub fn new() -> Symbolizer {
        let nofile = raise_nofile();
        let blaze = Blaze::builder()
            .enable_code_info(true)
            .enable_inlined_fns(true)
            // blazesym would demangle every name, C ones too (`f` came out as `float`, a
            // C++ type): names are demangled here, only those that are mangled.
            .enable_demangling(false)
            .build();
        let own_vdso = read_maps("/proc/self/maps")
            .ok()
            .and_then(|m| m.into_iter().find(|l| l.path == "[vdso]"))
            .map(|l| (l.start, l.end));
        // libbpf reads the number of CPUs once, at first need: now, while descriptors are
        // plentiful (reading a per-CPU map at the end must not fail for want of one).
        let _ = libbpf_rs::num_possible_cpus();
        Symbolizer {
            blaze,
            spaces: HashMap::new(),
            files: HashMap::new(),
            open_count: 0,
            // Each open file takes two descriptors (btrace's and blazesym's): an eighth of
            // the limit leaves the rest to everything else.
            open_cap: (nofile / 8).clamp(4, 256) as usize,
            tick: 0,
            unreadable: 0,
            kernel_cache: HashMap::new(),
            vdso_cache: HashMap::new(),
            own_vdso,
            own_root: dir_id("/proc/self/root"),
            ktext: None,
            ended_before: std::collections::HashSet::new(),
        }
    }

    /// At most how many mapped files are open at a time.
    pub fn open_cap(&self) -> usize {
        self.open_cap
    }

    /// User frames left unknown so far because their file could not be opened.
    pub fn unreadable(&self) -> u64 {
        self.unreadable
    }

    /// Reads the maps of process `pid` (host id; `proc_pid` is its id under btrace's
    /// /proc) now, for its stacks of generation `gen`, opening the files it maps. With
    /// `mm`, only if the process still has that address space (else its stacks stay
    /// unknown). Called once per generation; later calls keep the first reading.
    pub fn capture(&mut self, pid: u32, proc_pid: u32, gen: u64, mm: Option<MmId>) {
        if self.spaces.contains_key(&(pid, gen)) {
            return;
        }
        let space = self.read_space(proc_pid, mm);
        self.spaces.insert((pid, gen), space);
    }

    /// Whether generation `gen` of `pid` has been captured (readable or not).
    pub fn captured(&self, pid: u32, gen: u64) -> bool {
        self.spaces.contains_key(&(pid, gen))
    }

    /// The captures held: (pid, generation).
    pub fn held(&self) -> Vec<(u32, u64)> {
        self.spaces.keys().copied().collect()
    }

    /// Lets go of a capture (its maps; its files once no other capture maps them): the
    /// process is gone and its stacks symbolized, or (a stream's process whose maps
    /// changed: a library loaded after the first event) to read it again.
    pub fn release(&mut self, pid: u32, gen: u64) {
        let Some(Some(space)) = self.spaces.remove(&(pid, gen)) else {
            return;
        };
        for m in space.maps {
            if let MapKind::File { key, .. } = m.kind {
                let gone = self.files.get_mut(&key).is_some_and(|e| {
                    e.refs = e.refs.saturating_sub(1);
                    e.refs == 0 && e.open.is_none()
                });
                if gone {
                    self.files.remove(&key);
                }
            }
        }
    }

    /// Lets go of the captures whose process no longer has the address space they were
    /// read for (it exited or exec'd) since the previous call; returns how many. For
    /// stacks symbolized as they come (a stream's): a round later, no event of theirs is
    /// still queued (in the ring buffer, or in the batch being printed).
    pub fn release_ended(&mut self) -> usize {
        let ended: Vec<(u32, u64)> = self
            .spaces
            .iter()
            .filter(|(_, s)| match s {
                Some(AddrSpace {
                    dir, mm: Some(mm), ..
                }) => current_mm(dir) != Some(*mm),
                Some(AddrSpace { dir, mm: None, .. }) => current_mm(dir).is_none(),
                None => true,
            })
            .map(|(k, _)| *k)
            .collect();
        let (due, fresh): (Vec<_>, Vec<_>) = ended
            .into_iter()
            .partition(|k: &(u32, u64)| self.ended_before.contains(k));
        for &(pid, gen) in &due {
            self.release(pid, gen);
        }
        self.ended_before = fresh.into_iter().collect();
        due.len()
    }
}

/// The address to look up for frame `i`: a caller's frame holds a return address, just
/// after the call; the call itself (and the inlined functions around it) is one byte
/// before.
fn lookup_addr(i: usize, addr: u64) -> u64 {
    if i == 0 {
        addr
    } else {
        addr.saturating_sub(1)
    }
}

/// Raises the soft limit on open files to the hard one (where it is lower); returns the
/// soft limit now in force.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary's own functions, through its own maps (a live process).
    #[test]
    fn own_process_and_kernel() {
        let mut s = Symbolizer::new();
        let me = std::process::id();
        s.capture(me, me, 1, None);
        let addr = own_process_and_kernel as *const () as usize as u64;
        let frames = s.user(me, 1, &[addr]);
        let names: Vec<String> = frames.iter().map(Frame::text).collect();
        assert!(
            names.iter().any(|n| n.contains("own_process_and_kernel")),
            "{names:?}"
        );
        // An address in no mapping: unknown, with no module.
        let f = s.user(me, 1, &[8]);
        assert_eq!(f[0].text(), "[unknown] 0x8");
        // A generation never captured: unknown.
        assert!(!s.user(me, 2, &[addr])[0].known());
        // The kernel: a function every kernel has, where kallsyms shows addresses.
        if let Ok(k) = crate::resolve::kallsyms::Kallsyms::load() {
            let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
            let vfs = text
                .lines()
                .find(|l| l.ends_with(" vfs_read"))
                .and_then(|l| u64::from_str_radix(l.split(' ').next()?, 16).ok())
                .filter(|a| *a != 0);
            if let Some(a) = vfs {
                let f = s.kernel(&[a + 4]);
                assert_eq!(f[0].name.as_deref(), Some("vfs_read"), "{f:?}");
                assert_eq!(k.symbolize(a + 4, false).as_deref(), Some("vfs_read"));
            }
        }
    }

    #[test]
    fn exec_since_means_unknown() {
        let mut s = Symbolizer::new();
        let me = std::process::id();
        let wrong = MmId {
            start_stack: 1,
            exe_ino: 2,
        };
        s.capture(me, me, 7, Some(wrong));
        let addr = exec_since_means_unknown as *const () as usize as u64;
        assert!(!s.user(me, 7, &[addr])[0].known());
        let right = current_mm(&format!("/proc/{me}")).unwrap();
        s.capture(me, me, 8, Some(right));
        assert!(s.user(me, 8, &[addr])[0].known());
    }

    /// Files closed for want of room are opened again when needed; letting go of the
    /// last capture that maps a closed file forgets it.
    #[test]
    fn closed_files_reopen_and_released_captures_let_go() {
        let mut s = Symbolizer::new();
        s.open_cap = 1;
        let me = std::process::id();
        s.capture(me, me, 1, None);
        assert!(s.open_count <= 1);
        // Everything closed: each file is reopened through its path.
        s.close_lru(s.open_count);
        assert_eq!(s.open_count, 0);
        let addr = closed_files_reopen_and_released_captures_let_go as *const () as usize as u64;
        let f = s.user(me, 1, &[addr]);
        assert!(f[0].known(), "{f:?}");
        assert_eq!(s.open_count, 1);
        assert_eq!(s.unreadable(), 0);
        // Released: its files go once closed; what was found stays cached elsewhere.
        s.release(me, 1);
        assert!(!s.captured(me, 1));
        s.close_lru(s.open_count);
        assert!(s.files.is_empty(), "{:?}", s.files.keys());
        assert!(!s.user(me, 1, &[addr])[0].known());
    }
}
