// SPDX-License-Identifier: Apache-2.0
//! User addresses: the ELF symbols and DWARF of the mapped file (inlined functions and
//! source lines included), the vDSO through btrace's own, JIT code through the perf map;
//! the files opened and kept within [`Symbolizer::open_cap`].

use super::*;

impl Symbolizer {
    /// The mapped file `key`, opened if it is not: through the map_files link of the last
    /// process seen mapping it, else through its path in btrace's root (each checked
    /// against the inode: a path may name another file by now). Opening one more closes
    /// the least recently used beyond [`Symbolizer::open_cap`]; out of descriptors, half
    /// of those open are closed and it is tried once more. None: it cannot be opened.
    pub(super) fn open_file(&mut self, key: (u64, u64)) -> Option<&OpenFile> {
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
    pub(super) fn close_lru(&mut self, n: usize) {
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

/// Whether the 7 bytes before an address end with an x86-64 call: `e8 rel32`, or
/// `ff /2` (an indirect call, with its ModRM byte and up to 5 more bytes of operand).
pub fn after_call(b: &[u8; 7]) -> bool {
    if b[2] == 0xe8 {
        return true;
    }
    (2..=7).any(|k| b[7 - k] == 0xff && (b[8 - k] >> 3) & 7 == 2)
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
    let frame = |name: &str, inlined: bool, (file, line)| Frame {
        name: Some(demangle(name)),
        inlined,
        module: Some(module.to_string()),
        offset: 0,
        file,
        line,
        addr,
    };
    // The location of the outer function is where its inlined call is, when there is one.
    let at = match s.inlined.first() {
        Some(_) => (None, None),
        None => code(s.code_info.as_deref()),
    };
    let mut out = vec![frame(&s.name, false, at)];
    let n = s.inlined.len();
    for (k, f) in s.inlined.iter().enumerate() {
        // The innermost one sits at the address itself.
        let at = if k + 1 == n {
            code(s.code_info.as_deref())
        } else {
            (None, None)
        };
        out.push(frame(&f.name, true, at));
    }
    out
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
}
