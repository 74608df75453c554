// SPDX-License-Identifier: Apache-2.0
//! Kernel addresses: names from /proc/kallsyms, each checked against where kernel code is.

use super::*;

/// Where the kernel's code is: kallsyms has no sizes, so a name is taken only for an
/// address inside the text it belongs to (the kernel's own, a module's, or a BPF program
/// listed by name), never from the nearest symbol below some other memory.
#[derive(Debug, Default)]
pub(super) struct KernelText {
    core: Vec<(u64, u64)>,
    modules: Vec<(u64, u64)>,
    bpf_listed: bool,
}

impl KernelText {
    pub(super) fn read() -> KernelText {
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

impl Symbolizer {
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
}
