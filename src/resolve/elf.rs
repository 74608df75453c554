// SPDX-License-Identifier: Apache-2.0
//! User-space targets: the file a `TARGET` names (a path, or a library found the way the
//! dynamic linker finds it, or through a process's own maps and root), and a function in
//! it (a symbol, `SYMBOL+OFF` or an address) as the file offset a uprobe is placed at.
//! ELF parsing by the `object` crate.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

use super::insn::{self, Spot};

/// An ELF file read into memory.
pub struct ElfFile {
    pub path: PathBuf,
    pub data: Vec<u8>,
}

/// A function found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Func {
    /// The symbol (as in the file), or the address as given.
    pub name: String,
    /// Its virtual address in the file (symbol value plus offset).
    pub addr: u64,
    /// Where the uprobe goes: the offset of that address in the file.
    pub offset: u64,
    /// The offset after the symbol given with `SYMBOL+OFF` (0: the function's entry).
    pub plus: u64,
}

impl ElfFile {
    /// Reads `path`; a missing file or one that is not ELF is one clear line.
    pub fn open(path: &Path) -> Result<ElfFile> {
        if let Some(why) = super::not_regular_file(path) {
            bail!("{why}; give the binary or library that runs");
        }
        let data = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow!("no such file: {}", path.display()),
            _ => anyhow!("cannot read {}: {e}", path.display()),
        })?;
        if !data.starts_with(b"\x7fELF") {
            bail!(
                "{} is not an ELF file (a script or data?); give the binary or library that runs",
                path.display()
            );
        }
        object::File::parse(&*data)
            .with_context(|| format!("{} is not a readable ELF file", path.display()))?;
        Ok(ElfFile {
            path: path.to_path_buf(),
            data,
        })
    }

    pub fn object(&self) -> object::File<'_> {
        object::File::parse(&*self.data).expect("parsed when opened")
    }

    /// `FUNC`, `FUNC+OFF` or an address (0x...), as a uprobe's file offset; refused unless
    /// it starts an instruction of executable code (resolve::insn).
    pub fn func(&self, spec: &str) -> Result<Func> {
        self.func_checked(spec, true)
    }

    /// [`ElfFile::func`]; with `check_boundary` false (--unsafe-offset) the address must
    /// still be in executable code, but may be where no instruction is known to start.
    pub fn func_checked(&self, spec: &str, check_boundary: bool) -> Result<Func> {
        let obj = self.object();
        let (name, plus) = split_plus(spec)?;
        let (addr, spot) = if let Some(hex) = name.strip_prefix("0x") {
            let a = u64::from_str_radix(hex, 16).map_err(|_| anyhow!("bad address '{name}'"))?;
            let a = a
                .checked_add(plus)
                .ok_or_else(|| anyhow!("bad address '{spec}'"))?;
            (a, Spot::Address(a))
        } else {
            let (start, size) = self.symbol(&obj, name)?;
            let a = start
                .checked_add(plus)
                .ok_or_else(|| anyhow!("bad offset in '{spec}'"))?;
            let spot = Spot::Symbol {
                name,
                start,
                size,
                plus,
            };
            (a, spot)
        };
        let path = self.path.display().to_string();
        insn::check_site(&obj, &path, spot, check_boundary)?;
        let offset = file_offset(&obj, addr).ok_or_else(|| {
            anyhow!(
                "address {addr:#x} is in no loaded segment of {}",
                self.path.display()
            )
        })?;
        Ok(Func {
            name: name.to_string(),
            addr,
            offset,
            plus,
        })
    }

    /// The address and size of function symbol `name` (as written, or demangled), in the
    /// symbol table or, for a stripped file, among its exported symbols.
    fn symbol(&self, obj: &object::File<'_>, name: &str) -> Result<(u64, u64)> {
        let functions = || {
            obj.symbols()
                .chain(obj.dynamic_symbols())
                .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
        };
        let found = functions().find(|s| s.name() == Ok(name)).or_else(|| {
            functions().find(|s| {
                s.name()
                    .is_ok_and(|n| demangled(n).as_deref() == Some(name))
            })
        });
        if let Some(s) = found {
            return Ok((s.address(), s.size()));
        }
        let path = self.path.display();
        if obj.symbols().next().is_none() {
            bail!(
                "'{name}' is not among the exported symbols of {path}, and the file is stripped (no symbol table): give an address (0x...) or a binary with symbols"
            );
        }
        let names: Vec<String> = functions()
            .filter_map(|s| s.name().ok().map(str::to_string))
            .collect();
        let near = names
            .iter()
            .map(|n| (strsim::jaro_winkler(n, name), n))
            .filter(|(d, _)| *d > 0.9)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match near {
            Some((_, n)) => bail!("no function '{name}' in {path}; did you mean '{n}'?"),
            None => bail!(
                "no function '{name}' in {path} (its {} function symbols do not include it)",
                names.len()
            ),
        }
    }

    /// The functions whose symbol matches a glob (`*`, `?`), one per address (the public
    /// name of aliases), by name.
    pub fn glob(&self, pattern: &str) -> Vec<Func> {
        let obj = self.object();
        let mut found: Vec<Func> = obj
            .symbols()
            .chain(obj.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
            .filter_map(|s| {
                let name = s.name().ok()?;
                if !glob_match(pattern, name) {
                    return None;
                }
                Some(Func {
                    name: name.to_string(),
                    addr: s.address(),
                    offset: file_offset(&obj, s.address())?,
                    plus: 0,
                })
            })
            .collect();
        // Aliases (malloc, __libc_malloc) share an address: the public name is kept.
        found.sort_by_key(|f| {
            (
                f.addr,
                f.name.starts_with('_'),
                f.name.len(),
                f.name.clone(),
            )
        });
        found.dedup_by_key(|f| f.addr);
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    /// The file's GNU build id, if it has one.
    pub fn build_id(&self) -> Option<Vec<u8>> {
        self.object().build_id().ok().flatten().map(<[u8]>::to_vec)
    }
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` one.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            back = Some((i, j));
            i += 1;
        } else if let Some((bi, bj)) = back {
            i = bi + 1;
            j = bj + 1;
            back = Some((bi, bj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// `NAME+OFF` into the name and the offset (decimal or 0x hex).
fn split_plus(spec: &str) -> Result<(&str, u64)> {
    let Some((name, off)) = spec.rsplit_once('+') else {
        return Ok((spec, 0));
    };
    let n = match off.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => off.parse(),
    }
    .map_err(|_| anyhow!("bad offset '{off}' in '{spec}' (FUNC+OFF: a number)"))?;
    Ok((name, n))
}

/// A Rust or C++ symbol's demangled name (without Rust's hash), if it is mangled.
fn demangled(name: &str) -> Option<String> {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return Some(format!("{d:#}"));
    }
    if name.starts_with("_Z") {
        let sym = cpp_demangle::Symbol::new(name.as_bytes()).ok()?;
        let full = sym.demangle().ok()?;
        // Compared without the parameter list, as people write the name.
        return Some(full.split('(').next().unwrap_or(&full).to_string());
    }
    None
}

/// The file offset of virtual address `addr`, through the loadable segments.
pub fn file_offset(obj: &object::File<'_>, addr: u64) -> Option<u64> {
    obj.segments().find_map(|s| {
        let (off, size) = s.file_range();
        (addr >= s.address() && addr < s.address() + size).then(|| addr - s.address() + off)
    })
}

/// Whether a file name is the library `name` (`libc` or `c`: libc.so.6; `libssl.so.3`).
fn is_library(file: &str, name: &str) -> bool {
    let base = name.strip_suffix(".so").unwrap_or(name);
    let lib = if base.starts_with("lib") {
        base.to_string()
    } else {
        format!("lib{base}")
    };
    file == name
        || file.starts_with(&format!("{lib}.so"))
        || (file.starts_with(&format!("{lib}-")) && file.contains(".so"))
}

/// How `ldconfig -p` names the architecture btrace is built for, and the Debian/Ubuntu
/// multiarch library directories of it (searched before the plain default directories).
#[cfg(target_arch = "aarch64")]
const LD_CACHE_ARCH: &str = "AArch64";
#[cfg(target_arch = "aarch64")]
const MULTIARCH_LIB_DIRS: [&str; 2] = ["/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu"];
#[cfg(not(target_arch = "aarch64"))]
const LD_CACHE_ARCH: &str = "x86-64";
#[cfg(not(target_arch = "aarch64"))]
const MULTIARCH_LIB_DIRS: [&str; 2] = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"];

/// The libraries of ld.so's cache (`ldconfig -p`): file name and path, those of btrace's
/// own architecture.
fn ld_cache() -> Vec<(String, PathBuf)> {
    let Ok(out) = std::process::Command::new("ldconfig").arg("-p").output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (left, path) = l.trim().split_once(" => ")?;
            let file = left.split_whitespace().next()?;
            left.contains(LD_CACHE_ARCH)
                .then(|| (file.to_string(), PathBuf::from(path)))
        })
        .collect()
}

/// Where a process maps a file whose name is the library `name`, seen through the
/// process's own root (a container's files).
fn in_maps(pid: u32, name: &str) -> Option<PathBuf> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.starts_with('/') && is_library(p.rsplit('/').next().unwrap_or(p), name))
        .map(|p| Path::new(&format!("/proc/{pid}/root")).join(p.trim_start_matches('/')))
}

/// The file `TARGET` names: a path (inside the traced process's root when `pid` is
/// given), or a library as the dynamic linker finds it
/// (LD_LIBRARY_PATH, its cache, the default directories), or what the process `pid`
/// maps, or a program on PATH.
pub fn find_target(target: &str, pid: Option<u32>) -> Result<PathBuf> {
    if target.contains('/') {
        let p = PathBuf::from(target);
        // The traced process's own view of the path (its container's file, or the host's
        // when it shares the host's root).
        if let (Some(pid), true) = (pid, p.is_absolute()) {
            let inside = Path::new(&format!("/proc/{pid}/root")).join(&target[1..]);
            if inside.exists() {
                return Ok(inside);
            }
        }
        if !p.exists() {
            bail!("no such file: {target}");
        }
        return Ok(p);
    }
    if let Some(p) = pid.and_then(|pid| in_maps(pid, target)) {
        return Ok(p);
    }
    let dirs = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    for d in dirs.split(':').filter(|d| !d.is_empty()) {
        if let Some(p) = in_dir(Path::new(d), target) {
            return Ok(p);
        }
    }
    if let Some((_, p)) = ld_cache().into_iter().find(|(f, _)| is_library(f, target)) {
        return Ok(p);
    }
    for d in MULTIARCH_LIB_DIRS
        .into_iter()
        .chain(["/lib64", "/usr/lib64", "/lib", "/usr/lib"])
    {
        if let Some(p) = in_dir(Path::new(d), target) {
            return Ok(p);
        }
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for d in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(d).join(target);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "no library or program '{target}' (searched LD_LIBRARY_PATH, ld.so's cache, the default library directories and PATH{}); give its path",
        if pid.is_some() { ", and the process's maps" } else { "" }
    )
}

fn in_dir(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| is_library(&e.file_name().to_string_lossy(), name))
        .map(|e| e.path())
        .collect();
    // libc.so.6 before libc.so (a linker script in -dev packages).
    found.sort_by_key(|p| std::cmp::Reverse(p.to_string_lossy().len()));
    found
        .into_iter()
        .find(|p| p.is_file() && std::fs::read(p).is_ok_and(|d| d.starts_with(b"\x7fELF")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_names() {
        assert!(is_library("libc.so.6", "libc"));
        assert!(is_library("libc.so.6", "c"));
        assert!(is_library("libc.so.6", "libc.so.6"));
        assert!(is_library("libssl.so.3", "libssl"));
        assert!(!is_library("libcrypt.so.1", "libc"));
        assert!(!is_library("libcap.so.2", "libc"));
        assert!(is_library("libc-2.31.so", "libc"));
    }

    #[test]
    fn globs() {
        assert!(glob_match("malloc*", "malloc"));
        assert!(glob_match("malloc*", "malloc_usable_size"));
        assert!(glob_match("*alloc", "calloc"));
        assert!(glob_match("?alloc", "calloc"));
        assert!(!glob_match("?alloc", "malloc_x"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn plus_offsets() {
        assert_eq!(split_plus("f").unwrap(), ("f", 0));
        assert_eq!(split_plus("f+0x10").unwrap(), ("f", 16));
        assert_eq!(split_plus("f+4").unwrap(), ("f", 4));
        assert!(split_plus("f+x").is_err());
    }

    #[test]
    fn demangling() {
        assert_eq!(
            demangled("_ZN4core3fmt5write17h0123456789abcdefE").as_deref(),
            Some("core::fmt::write")
        );
        assert_eq!(demangled("_ZN3foo3barEi").as_deref(), Some("foo::bar"));
        assert_eq!(demangled("malloc"), None);
    }

    #[test]
    fn libc_found_and_malloc_resolved() {
        let p = find_target("libc", None).unwrap();
        let f = ElfFile::open(&p).unwrap();
        let m = f.func("malloc").unwrap();
        assert!(m.offset > 0);
        let e = f
            .func("mallocx_nothing_like_it_btrace")
            .unwrap_err()
            .to_string();
        assert!(e.contains("stripped") || e.contains("no function"), "{e}");
    }
}
