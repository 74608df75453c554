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

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blazesym::symbolize::source::{Elf, Kernel, Process, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer as Blaze};
use blazesym::{MaybeDefault, Pid};

/// One frame of a stack: a function, or an address nothing names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The function; None when unknown.
    pub name: Option<String>,
    /// Inlined into the frame before it (the caller) at this address.
    pub inlined: bool,
    /// The file mapped at the address (a path, `[vdso]`, `[anon]`), or `[kernel]`.
    pub module: Option<String>,
    /// The offset in `module` (a file offset for files), for unknown frames.
    pub offset: u64,
    /// Source location, where debug information has it.
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The address as recorded.
    pub addr: u64,
}

impl Frame {
    fn unknown(addr: u64, module: Option<String>, offset: u64) -> Frame {
        Frame {
            name: None,
            inlined: false,
            module,
            offset,
            file: None,
            line: None,
            addr,
        }
    }

    /// The frame as shown: the function, or `[unknown] module+0xoff` (`[unknown] 0xaddr`
    /// when not even the module is known).
    pub fn text(&self) -> String {
        match (&self.name, &self.module) {
            (Some(n), _) => n.clone(),
            (None, Some(m)) => {
                let base = Path::new(m)
                    .file_name()
                    .map(|b| b.to_string_lossy().into_owned())
                    .unwrap_or_else(|| m.clone());
                format!("[unknown] {base}+0x{:x}", self.offset)
            }
            (None, None) => format!("[unknown] 0x{:x}", self.addr),
        }
    }

    pub fn known(&self) -> bool {
        self.name.is_some()
    }

    /// The frame as a JSON object.
    pub fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("name".into(), self.text().into());
        m.insert("addr".into(), format!("0x{:x}", self.addr).into());
        if self.inlined {
            m.insert("inlined".into(), true.into());
        }
        if let Some(md) = &self.module {
            m.insert("module".into(), md.clone().into());
        }
        if self.name.is_none() && self.module.is_some() {
            m.insert("offset".into(), format!("0x{:x}", self.offset).into());
        }
        if let Some(f) = &self.file {
            m.insert("file".into(), f.clone().into());
        }
        if let Some(l) = self.line {
            m.insert("line".into(), l.into());
        }
        serde_json::Value::Object(m)
    }
}

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

/// Where the kernel's code is: kallsyms has no sizes, so a name is taken only for an
/// address inside the text it belongs to (the kernel's own, a module's, or a BPF program
/// listed by name), never from the nearest symbol below some other memory.
#[derive(Debug, Default)]
struct KernelText {
    core: Vec<(u64, u64)>,
    modules: Vec<(u64, u64)>,
    bpf_listed: bool,
}

impl KernelText {
    fn read() -> KernelText {
        let syms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        let find = |name: &str| {
            syms.lines().find_map(|l| {
                let mut w = l.split_whitespace();
                let a = w.next()?;
                w.next()?;
                (w.next()? == name && w.next().is_none())
                    .then(|| u64::from_str_radix(a, 16).ok())
                    .flatten()
            })
        };
        let mut core = Vec::new();
        for (s, e) in [("_stext", "_etext"), ("_sinittext", "_einittext")] {
            if let (Some(s), Some(e)) = (find(s), find(e)) {
                if s != 0 && s < e {
                    core.push((s, e));
                }
            }
        }
        // name size refcount deps state base
        let modules = std::fs::read_to_string("/proc/modules")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let size: u64 = w.get(1)?.parse().ok()?;
                let base = u64::from_str_radix(w.get(5)?.trim_start_matches("0x"), 16).ok()?;
                (base != 0).then_some((base, base + size))
            })
            .collect();
        let bpf_listed = std::fs::read_to_string("/proc/sys/net/core/bpf_jit_kallsyms")
            .is_ok_and(|v| v.trim() == "1");
        KernelText {
            core,
            modules,
            bpf_listed,
        }
    }

    /// Whether `name`, which starts at `start`, may name `addr`.
    fn names(&self, addr: u64, start: u64, name: &str) -> bool {
        let within = |r: &[(u64, u64)]| {
            r.iter()
                .any(|&(s, e)| s <= addr && addr < e && s <= start && start <= addr)
        };
        if within(&self.core) || within(&self.modules) {
            return true;
        }
        let bpf = ["bpf_prog_", "bpf_trampoline_", "bpf_dispatcher_"];
        self.bpf_listed && bpf.iter().any(|p| name.starts_with(p))
    }
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

    fn read_space(&mut self, proc_pid: u32, mm: Option<MmId>) -> Option<AddrSpace> {
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

    /// The mapped file `key`, opened if it is not: through the map_files link of the last
    /// process seen mapping it, else through its path in btrace's root (each checked
    /// against the inode: a path may name another file by now). Opening one more closes
    /// the least recently used beyond [`Symbolizer::open_cap`]; out of descriptors, half
    /// of those open are closed and it is tried once more. None: it cannot be opened.
    fn open_file(&mut self, key: (u64, u64)) -> Option<&OpenFile> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.files.get(&key)?;
        if entry.open.is_none() {
            let paths: Vec<String> = [&entry.map_file, &entry.host_path]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            let mut file = None;
            for p in &paths {
                match open_checked(p, key.1) {
                    Ok(f) => {
                        file = Some(f);
                        break;
                    }
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                        self.close_lru(self.open_count.div_ceil(2));
                        if let Ok(f) = open_checked(p, key.1) {
                            file = Some(f);
                            break;
                        }
                    }
                    Err(_) => {}
                }
            }
            let file = file?;
            if self.open_count >= self.open_cap {
                self.close_lru(self.open_count + 1 - self.open_cap);
            }
            let entry = self.files.get_mut(&key)?;
            entry.open = Some(OpenFile {
                path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
                file,
                used: tick,
            });
            self.open_count += 1;
        }
        let open = self.files.get_mut(&key)?.open.as_mut()?;
        open.used = tick;
        Some(open)
    }

    /// Closes the `n` least recently used open files (and blazesym's copy of what it read
    /// from them); a file no address space maps any more is forgotten.
    fn close_lru(&mut self, n: usize) {
        let mut open: Vec<(u64, (u64, u64))> = self
            .files
            .iter()
            .filter_map(|(k, e)| e.open.as_ref().map(|o| (o.used, *k)))
            .collect();
        open.sort_unstable();
        for (_, key) in open.into_iter().take(n) {
            let Some(e) = self.files.get_mut(&key) else {
                continue;
            };
            if let Some(o) = e.open.take() {
                let _ = self
                    .blaze
                    .evict(&blazesym::symbolize::evict::Elf::new(o.path).into());
                self.open_count -= 1;
            }
            if e.refs == 0 {
                self.files.remove(&key);
            }
        }
    }

    /// Frames of a kernel stack (innermost first, as recorded); each address gives one
    /// frame or more (inlined functions are not known for the kernel: one).
    pub fn kernel(&mut self, addrs: &[u64]) -> Vec<Frame> {
        let todo: Vec<u64> = addrs
            .iter()
            .enumerate()
            .map(|(i, &a)| lookup_addr(i, a))
            .filter(|a| !self.kernel_cache.contains_key(a))
            .collect();
        if !todo.is_empty() {
            let src = Source::Kernel(Kernel {
                kallsyms: MaybeDefault::Default,
                vmlinux: MaybeDefault::None,
                kaslr_offset: Some(0),
                debug_syms: false,
                ..Default::default()
            });
            let res = self.blaze.symbolize(&src, Input::AbsAddr(&todo));
            let ktext = self.ktext.get_or_insert_with(KernelText::read);
            for (i, &a) in todo.iter().enumerate() {
                let frames = match res.as_ref().ok().and_then(|r| r.get(i)) {
                    Some(Symbolized::Sym(s)) if ktext.names(a, a - s.offset as u64, &s.name) => {
                        vec![Frame {
                            name: Some(s.name.to_string()),
                            inlined: false,
                            module: s
                                .module
                                .as_ref()
                                .map(|m| m.to_string_lossy().into_owned())
                                .filter(|m| !m.is_empty()),
                            offset: s.offset as u64,
                            file: None,
                            line: None,
                            addr: a,
                        }]
                    }
                    _ => vec![Frame::unknown(a, Some("[kernel.kallsyms]".into()), a)],
                };
                self.kernel_cache.insert(a, frames);
            }
        }
        let mut out = Vec::new();
        for (i, &a) in addrs.iter().enumerate() {
            for f in &self.kernel_cache[&lookup_addr(i, a)] {
                let mut f = f.clone();
                f.addr = a;
                out.push(f);
            }
        }
        out
    }

    /// Frames of a user stack of process `pid`, generation `gen` (innermost first; an
    /// address inside inlined code gives the inlined functions first, then the function
    /// they were inlined into).
    ///
    /// A caller's frame must hold a return address: inside executable memory of the
    /// process, right after a call instruction. A frame-pointer walk through code built
    /// without frame pointers reads other values from the stack; the stack ends at the
    /// first such frame (it would name whatever function the value happens to fall in).
    pub fn user(&mut self, pid: u32, gen: u64, addrs: &[u64]) -> Vec<Frame> {
        self.user_frames(pid, gen, addrs).frames()
    }

    /// [`Symbolizer::user`] in the compact form, to keep.
    pub fn user_frames(&mut self, pid: u32, gen: u64, addrs: &[u64]) -> UserFrames {
        let mut out = Vec::with_capacity(addrs.len());
        for (i, &a) in addrs.iter().enumerate() {
            if i > 0 && !self.return_address(pid, gen, a) {
                break;
            }
            out.push((a, self.user_addr(pid, gen, lookup_addr(i, a))));
        }
        UserFrames(out)
    }

    /// Whether `addr` can be a return address of that address space: mapped executable,
    /// and (in a file, on x86-64) just after a call instruction. Unknown processes and
    /// memory btrace cannot read are given the benefit of the doubt.
    fn return_address(&mut self, pid: u32, gen: u64, addr: u64) -> bool {
        let Some(Some(space)) = self.spaces.get(&(pid, gen)) else {
            return true;
        };
        let Some(m) = space.maps.iter().find(|m| m.start <= addr && addr < m.end) else {
            return false;
        };
        let MapKind::File { key, .. } = m.kind else {
            return true;
        };
        let off = addr - m.start + m.offset;
        if !cfg!(target_arch = "x86_64") || off < 7 {
            return true;
        }
        let Some(open) = self.open_file(key) else {
            return true;
        };
        let mut b = [0u8; 7];
        use std::os::unix::fs::FileExt;
        match open.file.read_exact_at(&mut b, off - 7) {
            Ok(()) => after_call(&b),
            Err(_) => true,
        }
    }

    /// One user address: its frames, outermost (the real function) first.
    fn user_addr(&mut self, pid: u32, gen: u64, addr: u64) -> Arc<[Frame]> {
        let unknown = |module: Option<String>, off: u64| -> Arc<[Frame]> {
            Arc::from(vec![Frame::unknown(addr, module, off)])
        };
        let Some(Some(space)) = self.spaces.get_mut(&(pid, gen)) else {
            return unknown(None, 0);
        };
        let Some(m) = space
            .maps
            .iter()
            .find(|m| m.start <= addr && addr < m.end)
            .cloned()
        else {
            return unknown(None, 0);
        };
        match &m.kind {
            MapKind::File { name, key } => {
                let off = addr - m.start + m.offset;
                let cached = self.files.get(key).and_then(|e| e.frames.get(&off));
                if let Some(frames) = cached {
                    return same_module(frames, name);
                }
                let Some(open) = self.open_file(*key) else {
                    self.unreadable += 1;
                    return unknown(Some(name.clone()), off);
                };
                let src = Source::Elf(Elf::new(open.path.clone()));
                let frames: Arc<[Frame]> =
                    match self.blaze.symbolize_single(&src, Input::FileOffset(off)) {
                        Ok(Symbolized::Sym(s)) => Arc::from(sym_frames(&s, addr, name)),
                        _ => unknown(Some(name.clone()), off),
                    };
                if let Some(e) = self.files.get_mut(key) {
                    e.frames.insert(off, frames.clone());
                }
                frames
            }
            MapKind::Vdso => {
                let off = addr - m.start;
                if let Some(frames) = self.vdso_cache.get(&off) {
                    return frames.clone();
                }
                let own = self
                    .own_vdso
                    .filter(|(s, e)| off < e - s)
                    .map(|(s, _)| s + off);
                let sym = own.and_then(|a| {
                    let src = Source::Process(Process::new(Pid::Slf));
                    match self.blaze.symbolize_single(&src, Input::AbsAddr(a)) {
                        Ok(Symbolized::Sym(s)) => Some(Arc::from(sym_frames(&s, addr, "[vdso]"))),
                        _ => None,
                    }
                });
                let frames = sym.unwrap_or_else(|| unknown(Some("[vdso]".into()), off));
                self.vdso_cache.insert(off, frames.clone());
                frames
            }
            MapKind::Anon(what) => match space.perf_map_lookup(addr) {
                Some(name) => Arc::from(vec![Frame {
                    name: Some(name),
                    inlined: false,
                    module: Some(format!("perf-{}.map", space.inner_pid)),
                    offset: 0,
                    file: None,
                    line: None,
                    addr,
                }]),
                None => unknown(Some(what.clone()), addr - m.start),
            },
        }
    }
}

/// The most of a perf map read: far more than a JIT writes in a long run, and a bound
/// on what a planted file can make btrace hold.
const PERF_MAP_MAX: u64 = 256 << 20;

/// Cached frames of a file for a mapping of it under path `name`: as they are when the
/// path is the one they were found under, else copies naming `name`.
fn same_module(frames: &Arc<[Frame]>, name: &str) -> Arc<[Frame]> {
    if frames.iter().all(|f| f.module.as_deref() == Some(name)) {
        return frames.clone();
    }
    frames
        .iter()
        .map(|f| Frame {
            module: Some(name.to_string()),
            ..f.clone()
        })
        .collect()
}

impl AddrSpace {
    /// The JIT symbol at `addr` from the process's perf map (read once, at first need):
    /// in btrace's /tmp when the process shares btrace's root, else through its root
    /// (a container's /tmp is its own) while it still has this address space.
    fn perf_map_lookup(&mut self, addr: u64) -> Option<String> {
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
                .and_then(|p| super::read_planted_file(Path::new(&p), PERF_MAP_MAX))
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

/// Whether the 7 bytes before an address end with an x86-64 call: `e8 rel32`, or
/// `ff /2` (an indirect call, with its ModRM byte and up to 5 more bytes of operand).
pub fn after_call(b: &[u8; 7]) -> bool {
    if b[2] == 0xe8 {
        return true;
    }
    (2..=7).any(|k| b[7 - k] == 0xff && (b[8 - k] >> 3) & 7 == 2)
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

/// A symbol's name as shown: demangled when it is mangled (Rust's v0 `_R...` or legacy
/// `_ZN...17h<hash>E`, without the hash; C++'s Itanium `_Z...`, with its parameters), as
/// written otherwise (C names, and what does not demangle: never a wrong name).
pub fn demangle(name: &str) -> String {
    if !(name.starts_with("_Z") || name.starts_with("_R")) {
        return name.to_string();
    }
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}");
    }
    if name.starts_with("_Z") {
        if let Some(d) = cpp_demangle::Symbol::new(name.as_bytes())
            .ok()
            .and_then(|s| s.demangle().ok())
        {
            return d;
        }
    }
    name.to_string()
}

/// The frames of one symbolized address, the real function first, then what was inlined
/// into it at that address, outer to inner.
fn sym_frames(s: &blazesym::symbolize::Sym<'_>, addr: u64, module: &str) -> Vec<Frame> {
    let code = |c: Option<&blazesym::symbolize::CodeInfo<'_>>| {
        c.map(|c| (Some(c.file.to_string_lossy().into_owned()), c.line))
            .unwrap_or((None, None))
    };
    // The location of the outer function is where its inlined call is, when there is one.
    let (file, line) = match s.inlined.first() {
        Some(_) => (None, None),
        None => code(s.code_info.as_deref()),
    };
    let mut out = vec![Frame {
        name: Some(demangle(&s.name)),
        inlined: false,
        module: Some(module.to_string()),
        offset: 0,
        file,
        line,
        addr,
    }];
    let n = s.inlined.len();
    for (k, f) in s.inlined.iter().enumerate() {
        // The innermost one sits at the address itself.
        let (file, line) = if k + 1 == n {
            code(s.code_info.as_deref())
        } else {
            (None, None)
        };
        out.push(Frame {
            name: Some(demangle(&f.name)),
            inlined: true,
            module: Some(module.to_string()),
            offset: 0,
            file,
            line,
            addr,
        });
    }
    out
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

fn read_maps(path: &str) -> std::io::Result<Vec<MapsLine>> {
    Ok(parse_maps(&std::fs::read_to_string(path)?))
}

/// The address space a process has now, as the kernel reports it with stacks.
fn current_mm(dir: &str) -> Option<MmId> {
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

/// A directory's (device, inode), through symbolic links (`/proc/PID/root`).
fn dir_id(path: &str) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Opens `path` if it is the file with inode `ino` (a path may name another file by now).
fn open_checked(path: &str, ino: u64) -> std::io::Result<File> {
    let file = File::open(path)?;
    if file.metadata()?.ino() != ino {
        return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mangled_names_are_demangled() {
        // C names that cpp_demangle alone would read as types (`f` float, `i` int).
        for c in ["f", "i", "d", "main", "v", "Sa", "do_f"] {
            assert_eq!(demangle(c), c);
        }
        assert_eq!(
            demangle("_ZN4core3fmt5write17h0123456789abcdefE"),
            "core::fmt::write"
        );
        assert_eq!(demangle("_RNvCs1234_3foo3bar"), "foo::bar");
        assert_eq!(demangle("_ZN3foo3barEi"), "foo::bar(int)");
        assert_eq!(demangle("_Z1fv"), "f()");
        // Not valid manglings: as written.
        assert_eq!(demangle("_Z"), "_Z");
        assert_eq!(demangle("_Rubbish"), "_Rubbish");
    }

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
    fn calls_before_return_addresses() {
        // call rel32
        assert!(after_call(&[0, 0, 0xe8, 1, 2, 3, 4]));
        // call *%rax (ff d0), call *0x8(%rbx) (ff 53 08)
        assert!(after_call(&[0, 0, 0, 0, 0, 0xff, 0xd0]));
        assert!(after_call(&[0, 0, 0, 0, 0xff, 0x53, 0x08]));
        // jmp *%rax (ff e0) and plain data are not calls
        assert!(!after_call(&[0, 0, 0, 0, 0, 0xff, 0xe0]));
        assert!(!after_call(&[0x48, 0x89, 0xe5, 0x90, 0x90, 0x90, 0x90]));
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

    #[test]
    fn unknown_frames_name_the_module() {
        let f = Frame::unknown(
            0x7f00_0000_1234,
            Some("/usr/lib/libfoo.so.1".into()),
            0x1234,
        );
        assert_eq!(f.text(), "[unknown] libfoo.so.1+0x1234");
        assert_eq!(Frame::unknown(0x42, None, 0).text(), "[unknown] 0x42");
        assert!(!f.known());
    }

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
