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
//! - processes that exit before the run ends: their maps are read, and their files kept
//!   open, while they live ([`Symbolizer::capture`], at a process's first recorded stack).
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

/// A file kept open for as long as btrace runs, read through `/proc/self/fd/N`.
#[derive(Debug)]
struct KeptFile {
    file: File,
    path: PathBuf,
}

#[derive(Clone, Debug)]
enum MapKind {
    File {
        /// The path the process maps it under (for display).
        name: String,
        /// The file itself, when it could be opened.
        kept: Option<Arc<KeptFile>>,
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

/// A process's executable mappings, read while it lived.
#[derive(Debug)]
struct AddrSpace {
    maps: Vec<Mapping>,
    /// The process's root directory (containers: its own), kept open.
    root: Option<File>,
    /// Its pid in its own pid namespace (the name of its perf map).
    inner_pid: u32,
    /// JIT symbols from the perf map, read at first need: (start, end, name).
    perf_map: Option<Vec<(u64, u64, String)>>,
}

/// Symbolizes kernel and user stacks; keeps what it read (maps, files, symbols).
pub struct Symbolizer {
    blaze: Blaze,
    /// (host pid, generation) -> the address space, or None: known not to be readable.
    spaces: HashMap<(u32, u64), Option<AddrSpace>>,
    /// Files by (device, inode), shared by every process mapping them.
    files: HashMap<(u64, u64), Arc<KeptFile>>,
    kernel_cache: HashMap<u64, Vec<Frame>>,
    user_cache: HashMap<(u64, u64, u64), Vec<Frame>>,
    /// btrace's own vDSO: (start, end).
    own_vdso: Option<(u64, u64)>,
    /// Where kernel code is, to check every kernel name (read at first need).
    ktext: Option<KernelText>,
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
        raise_nofile();
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
        Symbolizer {
            blaze,
            spaces: HashMap::new(),
            files: HashMap::new(),
            kernel_cache: HashMap::new(),
            user_cache: HashMap::new(),
            own_vdso,
            ktext: None,
        }
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

    /// Forgets a capture, so that it is read again (a stream's process whose maps
    /// changed: a library loaded after the first event).
    pub fn forget(&mut self, pid: u32, gen: u64) {
        self.spaces.remove(&(pid, gen));
        self.user_cache
            .retain(|k, _| k.0 != pid as u64 || k.1 != gen);
    }

    fn read_space(&mut self, proc_pid: u32, mm: Option<MmId>) -> Option<AddrSpace> {
        let dir = format!("/proc/{proc_pid}");
        if let Some(want) = mm {
            if current_mm(&dir)? != want {
                return None;
            }
        }
        let lines = read_maps(&format!("{dir}/maps")).ok()?;
        let root = File::open(format!("{dir}/root")).ok();
        let inner_pid = inner_pid(&dir).unwrap_or(proc_pid);
        let mut maps = Vec::new();
        for l in lines.into_iter().filter(|l| l.exec) {
            let kind = if l.path == "[vdso]" {
                MapKind::Vdso
            } else if l.path.starts_with('/') && l.inode != 0 {
                let kept = self.keep_file(&dir, &l);
                MapKind::File {
                    name: l.path.trim_end_matches(" (deleted)").to_string(),
                    kept,
                }
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
            root,
            inner_pid,
            perf_map: None,
        })
    }

    /// The mapped file, opened once per (device, inode): through map_files (works for
    /// deleted files and other mount namespaces), else through the process's root.
    fn keep_file(&mut self, dir: &str, l: &MapsLine) -> Option<Arc<KeptFile>> {
        let key = (l.dev, l.inode);
        if let Some(k) = self.files.get(&key) {
            return Some(k.clone());
        }
        let by_map = format!("{dir}/map_files/{:x}-{:x}", l.start, l.end);
        let path = l.path.trim_end_matches(" (deleted)");
        let file = File::open(&by_map)
            .or_else(|_| File::open(format!("{dir}/root{path}")))
            .ok()?;
        // The same file? (a path may name another file in another mount namespace)
        let meta = file.metadata().ok()?;
        if meta.ino() != l.inode {
            return None;
        }
        let kept = Arc::new(KeptFile {
            path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            file,
        });
        self.files.insert(key, kept.clone());
        Some(kept)
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
        let mut out = Vec::new();
        for (i, &a) in addrs.iter().enumerate() {
            if i > 0 && !self.return_address(pid, gen, a) {
                break;
            }
            let look = lookup_addr(i, a);
            let key = (pid as u64, gen, look);
            if !self.user_cache.contains_key(&key) {
                let frames = self.user_addr(pid, gen, look);
                self.user_cache.insert(key, frames);
            }
            for f in self.user_cache[&key].iter().rev() {
                let mut f = f.clone();
                f.addr = a;
                out.push(f);
            }
        }
        out
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
        let MapKind::File {
            kept: Some(kept), ..
        } = &m.kind
        else {
            return true;
        };
        let off = addr - m.start + m.offset;
        if !cfg!(target_arch = "x86_64") || off < 7 {
            return true;
        }
        let mut b = [0u8; 7];
        use std::os::unix::fs::FileExt;
        match kept.file.read_exact_at(&mut b, off - 7) {
            Ok(()) => after_call(&b),
            Err(_) => true,
        }
    }

    /// One user address: its frames, outermost (the real function) first.
    fn user_addr(&mut self, pid: u32, gen: u64, addr: u64) -> Vec<Frame> {
        let Some(Some(space)) = self.spaces.get_mut(&(pid, gen)) else {
            return vec![Frame::unknown(addr, None, 0)];
        };
        let Some(m) = space
            .maps
            .iter()
            .find(|m| m.start <= addr && addr < m.end)
            .cloned()
        else {
            return vec![Frame::unknown(addr, None, 0)];
        };
        match &m.kind {
            MapKind::File { name, kept } => {
                let off = addr - m.start + m.offset;
                let Some(kept) = kept else {
                    return vec![Frame::unknown(addr, Some(name.clone()), off)];
                };
                let src = Source::Elf(Elf::new(kept.path.clone()));
                match self.blaze.symbolize_single(&src, Input::FileOffset(off)) {
                    Ok(Symbolized::Sym(s)) => sym_frames(&s, addr, name),
                    _ => vec![Frame::unknown(addr, Some(name.clone()), off)],
                }
            }
            MapKind::Vdso => {
                let off = addr - m.start;
                let own = self
                    .own_vdso
                    .filter(|(s, e)| off < e - s)
                    .map(|(s, _)| s + off);
                let sym = own.and_then(|a| {
                    let src = Source::Process(Process::new(Pid::Slf));
                    match self.blaze.symbolize_single(&src, Input::AbsAddr(a)) {
                        Ok(Symbolized::Sym(s)) => Some(sym_frames(&s, addr, "[vdso]")),
                        _ => None,
                    }
                });
                sym.unwrap_or_else(|| vec![Frame::unknown(addr, Some("[vdso]".into()), off)])
            }
            MapKind::Anon(what) => {
                let jit = space.perf_map_lookup(addr);
                match jit {
                    Some(name) => vec![Frame {
                        name: Some(name),
                        inlined: false,
                        module: Some(format!("perf-{}.map", space.inner_pid)),
                        offset: 0,
                        file: None,
                        line: None,
                        addr,
                    }],
                    None => vec![Frame::unknown(addr, Some(what.clone()), addr - m.start)],
                }
            }
        }
    }
}

/// The most of a perf map read: far more than a JIT writes in a long run, and a bound
/// on what a planted file can make btrace hold.
const PERF_MAP_MAX: u64 = 256 << 20;

impl AddrSpace {
    /// The JIT symbol at `addr` from the process's perf map (read once, at first need,
    /// through its root: a container's /tmp is its own).
    fn perf_map_lookup(&mut self, addr: u64) -> Option<String> {
        if self.perf_map.is_none() {
            let name = format!("tmp/perf-{}.map", self.inner_pid);
            let text = match &self.root {
                Some(root) => {
                    let p = format!("/proc/self/fd/{}/{name}", root.as_raw_fd());
                    super::read_planted_file(Path::new(&p), PERF_MAP_MAX).unwrap_or_default()
                }
                None => String::new(),
            };
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

/// Files are kept open while btrace runs: allow as many as the hard limit does.
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
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
}
